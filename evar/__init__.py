"""evar: evaluate pretrained audio representations.

Importing the package is cheap on purpose: submodules import torch and friends only when used.
"""

__version__ = '0.1.0'
