"""Model targets on the reduced MQTTset captures, and PyTorch training speed.

`python -m bench models` decodes ../shared/datasets/mqttset-reduced with
mqttids.capture (train captures -> train split, test captures -> test split),
then trains and evaluates the four models on the packet and the flow feature
sets and prints the figures that docs/benchmarks.md records.
"""
