"""Measurements of what pooling buys a CNN, as importable functions.

    cost             parameters per layer, XLA FLOPs / bytes of the compiled forward,
                     activation sizes
    receptive_field  analytic receptive field per layer; effective receptive field
                     (Luo et al. 2016) from input gradients
    shift            accuracy vs shift; shift consistency (Zhang 2019)
    robustness       accuracy under Gaussian / salt-and-pepper noise, rotation, scaling
    generalisation   train-test accuracy gap
    gradcam          Grad-CAM (Selvaraju et al. 2017) for any model and named layer
    taps             read / perturb any named submodule's output (NNX class swap on a copy)
    fit              train several seeds of one architecture in one compiled program
    stages           PoolStack: a CNN with a chosen number of pooling stages

`python -m poolnets.report` runs all of them over a sweep and writes report/README.md.
Submodules import lazily; `import poolnets.analysis` imports nothing heavy.
"""
