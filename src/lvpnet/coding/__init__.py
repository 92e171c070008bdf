"""The coding stages: what turns the network's predictions into a bitstream and back.

Tables adapted to the slice (``adapt``, ``edge``, ``latent_adapt``), neighbour-repeat flags
(``repeat``, ``flag_adapt``, ``reference``), the coding-mode choice (``block_choice``,
``blocks``), the per-slice refinement and error feedback (``refine``, ``feedback``,
``fitting``), the classical base lattice (``lattice``, ``lattice_estimate``) and the estimate
of a slice's code length that training and Inspect read (``estimate.slice_bits``). How a plane's
stream composes them: its side information as ``stage`` stages and each item's parts as
``item_stage`` stages, both named by the bitstream profile (``coding.profiles``). The
network itself (GMSM, QCM, predictor, integer layers, its tables and plane preparation) lives
in ``lvpnet.model``.

The rule: ``coding`` may import ``model``, ``model`` never imports ``coding`` (the network
does not know the coding stages; ``tests/test_package_layers.py`` checks it), so a change to
the network does not touch these modules. Import the stages from their modules
(``from lvpnet.coding import refine``); this package re-exports nothing.
"""
