"""Energy/force regression: revised MD17, or the user's own labelled frames (``train_file``).

The data (download, splits, frames) is :mod:`zoo.data.rmd17` (with
:mod:`zoo.data.rmd17_download` and :mod:`zoo.data.labelled`); :mod:`.task` is the benchmark,
:mod:`.references` the per-element reference energies (fit, refit for fine-tuning, unseen
elements), :mod:`.own_data` the splits of the user's files and :mod:`.card` the card text.
"""
