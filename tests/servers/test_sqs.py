"""The local SQS server: long polling, visibility and redrive to the dead-letter queue."""

from __future__ import annotations


def test_send_receive_delete(sqs_client, sqs_queue):
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody='{"n": 1}')
    msgs = sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=2)["Messages"]
    assert [m["Body"] for m in msgs] == ['{"n": 1}']
    sqs_client.delete_message(QueueUrl=sqs_queue.url, ReceiptHandle=msgs[0]["ReceiptHandle"])
    assert not sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=1).get("Messages")


def test_redrive_moves_an_unhandled_message_to_the_dlq(sqs_client, sqs_queue):
    sqs_client.send_message(QueueUrl=sqs_queue.url, MessageBody="poison")
    for _ in range(sqs_queue.max_receive_count + 1):
        for m in sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=1).get("Messages", []):
            sqs_client.change_message_visibility(
                QueueUrl=sqs_queue.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
    dead = sqs_client.receive_message(QueueUrl=sqs_queue.dlq_url, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in dead] == ["poison"]
    assert not sqs_client.receive_message(QueueUrl=sqs_queue.url, WaitTimeSeconds=1).get("Messages")
