"""The coding stages: what turns the network's predictions into a bitstream and back.

Tables adapted to the slice (``adapt``, ``edge``, ``latent_adapt``), neighbour-repeat flags
(``repeat``, ``flag_adapt``, ``reference``), the coding-mode choice (``block_choice``,
``blocks``), the per-slice refinement and error feedback (``refine``, ``feedback``,
``fitting``), the classical base lattice (``lattice``, ``lattice_estimate``) and the estimate
of a slice's code length that training and Inspect read (``estimate``: one walk of a profile,
``plane_walk``, summed by ``slice_bits`` and mapped by ``lvpnet.analysis``). How a plane's
stream composes them: its side information as ``stage`` stages and each item's parts as
``item_stage`` stages, both named by the bitstream profile (``profiles``: each version's
declared settings, which the encoder, the decoder and the estimate read). The
network itself (GMSM, QCM, predictor, integer layers, its tables and plane preparation) lives
in ``lvpnet.model``.

The rule: ``coding`` may import ``model``, ``model`` never imports ``coding`` (the network
does not know the coding stages; ``tests/test_package_layers.py`` checks it), so a change to
the network does not touch these modules; ``coding`` never imports ``codecs`` (which imports the
engine, which imports ``coding``), so the estimate runs from ``model`` and ``coding`` alone. Import the stages from their modules
(``from lvpnet.coding import refine``); this package re-exports nothing.
"""
