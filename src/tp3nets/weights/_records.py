"""Records of the bundled weight files, written by recipes/sync_meta.py.

Generated from the training runs' own output (recipes/results/*.json); do not edit.
"""

from __future__ import annotations

from typing import Any, Final

RECORDS: Final[dict[str, dict[str, Any]]] = {'convnet2': {'file': 'convnet2_mnist_v1.safetensors',
              'file_size': 3159424,
              'history': [],
              'metrics': {'MNIST': {'acc@1': 0.0, 'loss': 0.0}, 'val_acc@1': 0.0},
              'num_params': 789718,
              'recipe': {'command': 'PROVISIONAL random initialisation, replaced by '
                                    'recipes/train_weights.py'},
              'sha256': '9710b844fedee50bc7ab97d53d9c9bad30f958ba76fdcffe2ca460ad552634e1'},
 'convnet3': {'file': 'convnet3_mnist_v1.safetensors',
              'file_size': 696880,
              'history': [],
              'metrics': {'MNIST': {'acc@1': 0.0, 'loss': 0.0}, 'val_acc@1': 0.0},
              'num_params': 173962,
              'recipe': {'command': 'PROVISIONAL random initialisation, replaced by '
                                    'recipes/train_weights.py'},
              'sha256': 'fe4d5f6b08047a010752ad8352b2d0bd6e1c775350f1caa00f4f56973752155c'},
 'convnet4': {'file': 'convnet4_mnist_v1.safetensors',
              'file_size': 4605424,
              'history': [],
              'metrics': {'MNIST': {'acc@1': 0.0, 'loss': 0.0}, 'val_acc@1': 0.0},
              'num_params': 1148618,
              'recipe': {'command': 'PROVISIONAL random initialisation, replaced by '
                                    'recipes/train_weights.py'},
              'sha256': '42feb5289a16475d8c37116702c3720984c495fd125291230c1d2ab9712f5995'},
 'multinomial_logistic_regression': {'file': 'multinomial_logistic_regression_mnist_v1.safetensors',
                                     'file_size': 31632,
                                     'history': [],
                                     'metrics': {'MNIST': {'acc@1': 0.0, 'loss': 0.0},
                                                 'val_acc@1': 0.0},
                                     'num_params': 7850,
                                     'recipe': {'command': 'PROVISIONAL random initialisation, '
                                                           'replaced by '
                                                           'recipes/train_weights.py'},
                                     'sha256': '3badc37f4c108a7856473341b944a840ebd919ce05d004391c1e07b94351112e'}}
