"""Id and padding conventions the kernels rely on, kept here so ``kernels`` imports nothing from
``toolkit`` (it is a leaf: the package builds on it, never the other way round).

They repeat ``toolkit/schema.py``, which documents them for every artifact; a test
(``tests/test_kernels.py``) fails if the two disagree.
"""

PAD = 0  # pads sequences and is never an item; real items are 1..n_items
