"""Records of the bundled int8 weight files, written by recipes/quantize.py; do not edit."""

# ruff: noqa: E501  (generated)

from __future__ import annotations

from typing import Any, Final

RECORDS: Final[dict[str, dict[str, Any]]] = {'convnet2': {'backend': 'x86',
              'calibration': {'images': 512,
                              'seed': 0,
                              'source': 'MNIST training split (55,000 images, val seed 42), '
                                        'seeded sample'},
              'file': 'convnet2_mnist_int8_v1.safetensors',
              'file_size': 801960,
              'metrics': {'MNIST': {'acc@1': 99.26, 'agreement': 9991}, 'val_acc@1': 99.4},
              'num_params': 789718,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --calibration 512 '
                                    '--seed 0 --backend x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': '080c6d29d98a95433d004ff9eac6776c1db5928813aee549afd05cc3f09417cf',
              'unquantized': 'ConvNet2_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.31}},
              'unquantized_sha256': 'a8e38352cd1911d55e18e12c0f5d8a73a7385812ac9f95e5fc706abee68fe741'},
 'convnet3': {'backend': 'x86',
              'calibration': {'images': 512,
                              'seed': 0,
                              'source': 'MNIST training split (55,000 images, val seed 42), '
                                        'seeded sample'},
              'file': 'convnet3_mnist_int8_v1.safetensors',
              'file_size': 187820,
              'metrics': {'MNIST': {'acc@1': 99.56, 'agreement': 9995}, 'val_acc@1': 99.46},
              'num_params': 173962,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --calibration 512 '
                                    '--seed 0 --backend x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': '832d80cd13b463e64152d6c970ea501a65748bfc4ea68af305e147c86b45aba2',
              'unquantized': 'ConvNet3_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.61}},
              'unquantized_sha256': '561d5dc5b0c3f7455fb1a77523ab33d153c4363816d889d0749c72ba8de22f82'},
 'convnet4': {'backend': 'x86',
              'calibration': {'images': 512,
                              'seed': 0,
                              'source': 'MNIST training split (55,000 images, val seed 42), '
                                        'seeded sample'},
              'file': 'convnet4_mnist_int8_v1.safetensors',
              'file_size': 1168640,
              'metrics': {'MNIST': {'acc@1': 99.69, 'agreement': 10000}, 'val_acc@1': 99.7},
              'num_params': 1148618,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --calibration 512 '
                                    '--seed 0 --backend x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': '536bfa291cd288f5707a97297c4f79a73f7e02dc18d1bf3dd803bc3ddf2802f9',
              'unquantized': 'ConvNet4_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.69}},
              'unquantized_sha256': '2f10781d6602785870cb9d922c5cca256db9f5740efe21d32e93c99db2c0cc5a'}}
