"""The edge app (a Greengrass component): Kafka in, two TFLite models per record, dynamic blend,
drift detection, windows up, speed models hot-swapped down. Never imports TensorFlow."""
