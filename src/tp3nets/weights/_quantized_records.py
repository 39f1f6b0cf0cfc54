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
              'metrics': {'MNIST': {'acc@1': 99.26, 'agreement': 9991, 'ece': 0.12},
                          'val_acc@1': 99.4},
              'num_params': 789718,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --models convnet2 '
                                    '--weights MNIST_V1 --calibration 512 --seed 0 --backend '
                                    'x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': 'a3a23f723a8bb6b2f42d4e2ba1ead8a4f56f699f3147887294faa20db3c677d5',
              'unquantized': 'ConvNet2_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.31}},
              'unquantized_sha256': '939ec69b52506cd4709f9caa674a3834c7ca641191a72e3feac39473d39d663d'},
 'convnet2_v2': {'backend': 'x86',
                 'calibration': {'images': 512,
                                 'seed': 0,
                                 'source': 'MNIST training split (55,000 images, val seed 42), '
                                           'seeded sample'},
                 'file': 'convnet2_mnist_int8_v2.safetensors',
                 'file_size': 801960,
                 'metrics': {'MNIST': {'acc@1': 99.22, 'agreement': 9991, 'ece': 0.25},
                             'val_acc@1': 99.32},
                 'num_params': 789718,
                 'quantization': 'post-training static int8 (torch.ao.quantization eager '
                                 'mode): Conv-BN-ReLU and Linear-ReLU fused, per-channel '
                                 'symmetric weights, histogram observers for activations (the '
                                 "backend's default qconfig)",
                 'recipe': {'command': 'python recipes/quantize.py --data DIR --models '
                                       'convnet2 --weights MNIST_V2 --calibration 512 --seed 0 '
                                       '--backend x86',
                            'hardware': 'x86_64, 2 CPU threads',
                            'torch_version': '2.14.1+cu130'},
                 'sha256': '91e3f620a674ae1a8b89d2954592185881f435bd4522e55511e0090c9164318b',
                 'unquantized': 'ConvNet2_Weights.MNIST_V2',
                 'unquantized_metrics': {'MNIST': {'acc@1': 99.23}},
                 'unquantized_sha256': '24d92b5e8bb3648f1413a849654471535b0a1a4f5a48fc839bbb0c090a51b6b3'},
 'convnet3': {'backend': 'x86',
              'calibration': {'images': 512,
                              'seed': 0,
                              'source': 'MNIST training split (55,000 images, val seed 42), '
                                        'seeded sample'},
              'file': 'convnet3_mnist_int8_v1.safetensors',
              'file_size': 187820,
              'metrics': {'MNIST': {'acc@1': 99.56, 'agreement': 9995, 'ece': 0.13},
                          'val_acc@1': 99.46},
              'num_params': 173962,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --models convnet3 '
                                    '--weights MNIST_V1 --calibration 512 --seed 0 --backend '
                                    'x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': '567d8eb6dcf77c212d07583fa1b399ff1cd97c2d36a74f1af732087e5ccd435f',
              'unquantized': 'ConvNet3_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.61}},
              'unquantized_sha256': '5bdc92bccc64cc5fc5ba672131f6c60999ad1e7721b778fab114965921175986'},
 'convnet4': {'backend': 'x86',
              'calibration': {'images': 512,
                              'seed': 0,
                              'source': 'MNIST training split (55,000 images, val seed 42), '
                                        'seeded sample'},
              'file': 'convnet4_mnist_int8_v1.safetensors',
              'file_size': 1168640,
              'metrics': {'MNIST': {'acc@1': 99.69, 'agreement': 10000, 'ece': 0.07},
                          'val_acc@1': 99.7},
              'num_params': 1148618,
              'quantization': 'post-training static int8 (torch.ao.quantization eager mode): '
                              'Conv-BN-ReLU and Linear-ReLU fused, per-channel symmetric '
                              "weights, histogram observers for activations (the backend's "
                              'default qconfig)',
              'recipe': {'command': 'python recipes/quantize.py --data DIR --models convnet4 '
                                    '--weights MNIST_V1 --calibration 512 --seed 0 --backend '
                                    'x86',
                         'hardware': 'x86_64, 2 CPU threads',
                         'torch_version': '2.14.1+cu130'},
              'sha256': 'b783a33b2e01e975102996e3fc4f878526310d699e06cacc4234d7f18dce51de',
              'unquantized': 'ConvNet4_Weights.MNIST_V1',
              'unquantized_metrics': {'MNIST': {'acc@1': 99.69}},
              'unquantized_sha256': 'b73702dd124682d594930779f08bba250c918b0672a576198e0db43f5ad0252e'},
 'convnet4_v2': {'backend': 'x86',
                 'calibration': {'images': 512,
                                 'seed': 0,
                                 'source': 'MNIST training split (55,000 images, val seed 42), '
                                           'seeded sample'},
                 'file': 'convnet4_mnist_int8_v2.safetensors',
                 'file_size': 1168640,
                 'metrics': {'MNIST': {'acc@1': 99.73, 'agreement': 9999, 'ece': 0.1},
                             'val_acc@1': 99.62},
                 'num_params': 1148618,
                 'quantization': 'post-training static int8 (torch.ao.quantization eager '
                                 'mode): Conv-BN-ReLU and Linear-ReLU fused, per-channel '
                                 'symmetric weights, histogram observers for activations (the '
                                 "backend's default qconfig)",
                 'recipe': {'command': 'python recipes/quantize.py --data DIR --models '
                                       'convnet4 --weights MNIST_V2 --calibration 512 --seed 0 '
                                       '--backend x86',
                            'hardware': 'x86_64, 2 CPU threads',
                            'torch_version': '2.14.1+cu130'},
                 'sha256': '68de50279a5b5e398ddd088ce3cf33975951a663c04b894a566ca3753c42cd74',
                 'unquantized': 'ConvNet4_Weights.MNIST_V2',
                 'unquantized_metrics': {'MNIST': {'acc@1': 99.72}},
                 'unquantized_sha256': '439b6182d234275e7e08b014281fc8c982ee3af3f46e749ce93c63af126d6055'},
 'convnet4_v3': {'backend': 'x86',
                 'calibration': {'images': 512,
                                 'seed': 0,
                                 'source': 'MNIST training split (55,000 images, val seed 42), '
                                           'seeded sample'},
                 'file': 'convnet4_mnist_int8_v3.safetensors',
                 'file_size': 1168640,
                 'metrics': {'MNIST': {'acc@1': 99.7, 'agreement': 10000, 'ece': 0.07},
                             'val_acc@1': 99.68},
                 'num_params': 1148618,
                 'quantization': 'post-training static int8 (torch.ao.quantization eager '
                                 'mode): Conv-BN-ReLU and Linear-ReLU fused, per-channel '
                                 'symmetric weights, histogram observers for activations (the '
                                 "backend's default qconfig)",
                 'recipe': {'command': 'python recipes/quantize.py --data DIR --models '
                                       'convnet4 --weights MNIST_V3 --calibration 512 --seed 0 '
                                       '--backend x86',
                            'hardware': 'x86_64, 2 CPU threads',
                            'torch_version': '2.14.1+cu130'},
                 'sha256': '31c669c5a49402b8a97c3318fcf6b23b74533a7381f43fb7a0622a7fdf819e4f',
                 'unquantized': 'ConvNet4_Weights.MNIST_V3',
                 'unquantized_metrics': {'MNIST': {'acc@1': 99.7}},
                 'unquantized_sha256': 'e2f25769d0dee30f56bb6749adab9ccfec28163bc5183d5eda7445e182e854c2'},
 'convnet4_v8': {'backend': 'x86',
                 'calibration': {'images': 512,
                                 'seed': 0,
                                 'source': 'MNIST training split (55,000 images, val seed 42), '
                                           'seeded sample'},
                 'file': 'convnet4_mnist_int8_v8.safetensors',
                 'file_size': 1168640,
                 'metrics': {'MNIST': {'acc@1': 99.71, 'agreement': 10000, 'ece': 0.14},
                             'val_acc@1': 99.62},
                 'num_params': 1148618,
                 'quantization': 'post-training static int8 (torch.ao.quantization eager '
                                 'mode): Conv-BN-ReLU and Linear-ReLU fused, per-channel '
                                 'symmetric weights, histogram observers for activations (the '
                                 "backend's default qconfig)",
                 'recipe': {'command': 'python recipes/quantize.py --data DIR --models '
                                       'convnet4 --weights MNIST_REAL_V8 --calibration 512 '
                                       '--seed 0 --backend x86',
                            'hardware': 'x86_64, 2 CPU threads',
                            'torch_version': '2.14.1+cu130'},
                 'sha256': '97c15cf249d59384483b155c8ca918dd625ed5f0df8745ad83c965d542bef0f9',
                 'unquantized': 'ConvNet4_Weights.MNIST_REAL_V8',
                 'unquantized_metrics': {'MNIST': {'acc@1': 99.71}},
                 'unquantized_sha256': '04c96ba6628070d38aae888322223e1ca92aa1133ed0065d6d8e8262d276c3b0'}}
