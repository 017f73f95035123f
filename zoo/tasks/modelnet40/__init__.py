"""ModelNet40 point-cloud classification (the Vector Neurons protocol, 300 points, SO(3)).

The data (download, conversion, cache) is :mod:`zoo.data.modelnet40`; :mod:`.task` is the
benchmark, :mod:`.evaluation` its fixed test rotations, accuracies and confusion matrix,
:mod:`.card` its card text and confusion-matrix figure.
"""
