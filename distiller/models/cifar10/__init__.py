"""Architectures for 32x32 RGB images with 10 classes (the ``cifar10`` and ``digits`` datasets).

Importing this package registers every builder in ``distiller.models.registry``.
"""
from .plain_cifar import PlainCifar, plain20_cifar, plain20_cifar_nobn
from .preresnet_cifar import (PreactBasicBlock, PreactResNetCifar, preact_resnet20_cifar,
                              preact_resnet20_cifar_conv_ds, preact_resnet32_cifar,
                              preact_resnet32_cifar_conv_ds, preact_resnet44_cifar,
                              preact_resnet44_cifar_conv_ds, preact_resnet56_cifar,
                              preact_resnet56_cifar_conv_ds, preact_resnet110_cifar,
                              preact_resnet110_cifar_conv_ds)
from .resnet_cifar import (BasicBlock, ResNetCifar, resnet20_cifar, resnet32_cifar, resnet44_cifar,
                           resnet56_cifar, resnet110_cifar, resnet1202_cifar)
from .resnet_cifar_earlyexit import (ResNetCifarEarlyExit, resnet20_cifar_earlyexit, resnet32_cifar_earlyexit,
                                     resnet44_cifar_earlyexit, resnet56_cifar_earlyexit,
                                     resnet110_cifar_earlyexit, resnet1202_cifar_earlyexit)
from .simplenet_cifar import SimpleNetCifar, simplenet_cifar
from .vgg_cifar import (VGGCifar, vgg11_bn_cifar, vgg11_cifar, vgg13_bn_cifar, vgg13_cifar, vgg16_bn_cifar,
                        vgg16_cifar, vgg19_bn_cifar, vgg19_cifar)

__all__ = [
    "BasicBlock", "PlainCifar", "PreactBasicBlock", "PreactResNetCifar", "ResNetCifar", "ResNetCifarEarlyExit",
    "SimpleNetCifar", "VGGCifar", "plain20_cifar", "plain20_cifar_nobn", "preact_resnet20_cifar",
    "preact_resnet20_cifar_conv_ds", "preact_resnet32_cifar", "preact_resnet32_cifar_conv_ds",
    "preact_resnet44_cifar", "preact_resnet44_cifar_conv_ds", "preact_resnet56_cifar",
    "preact_resnet56_cifar_conv_ds", "preact_resnet110_cifar", "preact_resnet110_cifar_conv_ds",
    "resnet20_cifar", "resnet32_cifar", "resnet44_cifar", "resnet56_cifar", "resnet110_cifar",
    "resnet1202_cifar", "resnet20_cifar_earlyexit", "resnet32_cifar_earlyexit", "resnet44_cifar_earlyexit",
    "resnet56_cifar_earlyexit", "resnet110_cifar_earlyexit", "resnet1202_cifar_earlyexit", "simplenet_cifar",
    "vgg11_bn_cifar", "vgg11_cifar", "vgg13_bn_cifar", "vgg13_cifar", "vgg16_bn_cifar", "vgg16_cifar",
    "vgg19_bn_cifar", "vgg19_cifar",
]
