"""Model builders: the demo's CNN, a small benchmark VGG, and the VGG / ResNet families of the papers.

Every builder takes ``classes`` and ``in_channels`` and works for any input size its pooling allows, and
the deep ones come in two flavours: the usual (BatchNorm, biases, max-pooling) and RMP-SNN's
conversion-friendly one (``batchnorm=False, bias=False, pool="avg"``). Each is also a factory for the CLI:
``spikeport convert spikeport.models:resnet20 --weights w.pt ...``.
"""

from spikeport.models.resnet import resnet, resnet18, resnet20, resnet34
from spikeport.models.small import mnist_cnn, vgg6
from spikeport.models.vgg import vgg, vgg11, vgg16

__all__ = ["mnist_cnn", "resnet", "resnet18", "resnet20", "resnet34", "vgg", "vgg11", "vgg16", "vgg6"]
