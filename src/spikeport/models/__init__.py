"""Model builders: the demo's CNN, a small benchmark VGG, the VGG / ResNet families of the papers, and a
small Vision Transformer (``vit``, timm's pre-norm layout).

Every builder takes ``num_classes`` (as torchvision's do) and ``in_channels``; the CNNs work for any input
size their pooling allows (the ViT's learned position embedding fixes its ``image_size`` at build time), and
the deep CNNs come in
two flavours: the usual (BatchNorm, biases, max-pooling) and RMP-SNN's conversion-friendly one
(``batchnorm=False, bias=False, pool="avg"``). Each is also a factory for the CLI:
``spikeport convert spikeport.models:resnet20 --weights w.pt ...``.
"""

from spikeport.models.resnet import resnet, resnet18, resnet20, resnet34
from spikeport.models.small import mnist_cnn, vgg6
from spikeport.models.vgg import vgg, vgg11, vgg16
from spikeport.models.vit import vit

__all__ = ["mnist_cnn", "resnet", "resnet18", "resnet20", "resnet34", "vgg", "vgg11", "vgg16", "vgg6", "vit"]
