"""``hybridstream fleet``: enrol Pis, see the fleet, roll component versions out in stages and back,
and clean up what fleet provisioning created. Every resource is found from the stack's outputs.

One module per concern: :mod:`.session` (AWS clients, errors), :mod:`.outputs` (the stack's outputs),
:mod:`.claim` (the claim certificate), :mod:`.enroll`, :mod:`.bundle` (the device tar),
:mod:`.status`, :mod:`.rollout`, :mod:`.cleanup`, :mod:`.models` (published models, LATEST) and
:mod:`.cli`.
"""
