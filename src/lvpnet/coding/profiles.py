"""The learned codec's bitstream versions, each a declared profile of named settings.

A chunk's version (the file index records it per slice) says how its planes were coded; the
encoder and the decoder both read that from one ``Profile``, so a setting has one name on
both sides and a version is a record, not a set of flags threaded by hand. Each version keeps
everything of the one before and switches on the settings it declares (``PROFILES[n].adds``);
``tests/test_profiles.py`` checks that against the fields. Numpy-free and torch-free: the
chunk layout (``codecs.lvpnet_chunk``) and the file reader consult it without loading the model.
It lives in ``coding``, beside the stages it names, so that the estimate (``coding.estimate``), which
runs a profile too, needs nothing from ``codecs`` (which imports the engine, which imports ``coding``).

A profile also names the side information a plane's pixel stream opens with, in the order the
decoder reads it (``Profile.side_stages``): ``coding.stage`` maps each name to a stage with one
interface (write, read, bits), the engine writes them in reverse and reads them in order, so a
version that adds side information adds a setting, its stage name here and the stage there
(``docs/MODEL.md`` section 4). ``Profile.item_stages`` names, the same way, what each coded item
holds (reference flags, neighbour-repeat flags, symbols; ``coding.item_stage``).

Why each version exists (measured figures: ``docs/MODEL.md``, ``BENCHMARKS.md``):

1. The network's fixed tables, nothing fitted to the slice.
2. Per-step scale offsets at the head of each pixel stream, chosen by the encoder
   (``tables.best_scale_offset``); the plane header gains the value step (``prep.to_grid``).
3. Pixel tables adapted to the slice (``coding.adapt``) with neighbour-repeat flags
   (``coding.repeat``), the coding mode chosen per plane; runs of unused values taken out
   (``prep.collapse_gaps``, listed in the chunk).
4. Each step's location refined by a linear predictor fitted on the slice (``coding.refine``),
   its scales moved by the residuals decoded nearby (``coding.feedback``), per-step scale
   offsets in [-8, 8].
5. The latent's tables adapted to the slice stage by stage (``coding.latent_adapt``) and two
   more levels of neighbour-repeat flags, only where most or all neighbours agree.
6. The adapted tables counted per scale and distance from the minimum (``coding.edge``), and
   flags on candidates at the plane's minimum, in contexts of their own (``coding.repeat``).
7. A plane's coarse lattice coded by JPEG-XL where that is smaller (``coding.lattice``,
   ``codecs.lvpnet_base``).
8. Flags for the pixels that repeat the previous slice (``coding.reference``).
9. The decoder computes nothing the stream does not need (``lattice_skip``): on the steps a
   version-7 base lattice gives, it ran the network, the refinement and the error feedback only
   to record residuals for the feedback of later steps (about a quarter of a CT slice's decode
   time). Now those steps are taken from the lattice alone; the feedback sees there the residuals
   of a network-free predictor on the lattice (``feedback.lattice_residuals``), the encoder chooses
   the lattice before fitting the steps after it, and writes "none" for the lattice steps'
   refinement and feedback (``docs/MODEL.md`` section 2h).
10. Neighbour-repeat flags coded in contexts of the network's prediction, adapting within a stage
    (``adaptive_flags``, ``coding.flag_adapt``): version 9 coded each flag with one probability per
    neighbour context ``x``, learnt between stages only, so a base lattice's first coded step saw
    only the priors and a location far from the candidate (text and graphics edges on black) cost
    as much as one on it. Now ``x`` is split by ``|mu - candidate|`` and the scale and the counts
    move round by round within each stage; on val the ultrasound planes pay 2.9% less (estimate,
    ``benchmarks/us_levers.md``; real bytes: ``benchmarks/bitstream10_val.md``). Which pixels carry
    a flag and the coding-mode choice are version 9's.
11. Constant 8 x 8 blocks leave the pixel stream (``block_map``, ``coding.blocks``): a map of the
    blocks whose pixels all hold one value, read after the side information and before the first
    step, takes their pixels out of every coded step (no flag, no symbol; a base lattice's pixels
    inside a block give its value). The coding mode gains one bit, the map on or off, which the
    encoder chooses per plane by the bits (``coding.block_choice``): wide flat backgrounds
    (ultrasound, graphics) stop paying a flag per pixel (``benchmarks/bitstream11_val.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


@dataclass(frozen=True)
class Profile:
    """What a bitstream version codes. Settings are off in version 1; see the module docstring."""

    version: int
    #: plane header: a u16 value step after the word counts (version 2)
    value_step: bool = False
    #: one scale offset per sub-image step at the head of the pixel stream (version 2)
    scale_offsets: bool = False
    #: plane header: a u32 gap count, then the gaps before the streams (version 3)
    value_gaps: bool = False
    #: pixel tables adapted to the slice, neighbour-repeat flags, a coding mode per plane (version 3)
    adapted_tables: bool = False
    #: locations refined per step, error feedback on the scales, offsets in [-8, 8] (version 4)
    refined: bool = False
    #: the latent's tables adapted to the slice stage by stage (version 5)
    staged_latent: bool = False
    #: flag levels 3 and 4 in the coding mode (version 5)
    wide_flags: bool = False
    #: table rows by scale and distance from the minimum (version 6)
    edge_classes: bool = False
    #: flags on candidates at the plane's minimum (version 6)
    min_flags: bool = False
    #: a coarse lattice coded by JPEG-XL where that is smaller; its level in the plane header (version 7)
    base_lattice: bool = False
    #: flags for the pixels repeating the previous slice; its level in the plane header (version 8)
    reference: bool = False
    #: no network, refinement or feedback on the base lattice's steps; the feedback sees a
    #: network-free predictor's residuals there (version 9)
    lattice_skip: bool = False
    #: neighbour-repeat flags in contexts of |mu - candidate| and the scale, adapting within a
    #: stage (``coding.flag_adapt``, version 10)
    adaptive_flags: bool = False
    #: constant 8 x 8 blocks mapped ahead of the steps, one more bit in the coding mode
    #: (``coding.blocks``, version 11)
    block_map: bool = False
    #: the settings this version switched on over the one before (declaration, not a setting)
    adds: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self):
        # the engine builds each stage on the ones before it: a profile that skips one is no version
        needs = {"adapted_tables": "scale_offsets", "refined": "adapted_tables", "base_lattice": "adapted_tables",
                 "reference": "adapted_tables", "lattice_skip": "base_lattice", "value_gaps": "value_step",
                 "adaptive_flags": "adapted_tables", "block_map": "lattice_skip"}
        for name, base in needs.items():
            if getattr(self, name) and not getattr(self, base):
                raise ValueError(f"profile {self.version}: {name} needs {base}")

    def side_stages(self) -> tuple[str, ...]:
        """The plane's side information, by stage name, in the order the decoder reads it (the
        encoder writes it in reverse): the coding mode, the scale offsets, the refinement and
        feedback, the block map. Names only; ``coding.stage`` maps them to the stages."""
        named = [("coding_mode", self.adapted_tables), ("scale_offsets", self.scale_offsets),
                 ("refinement", self.refined), ("block_map", self.block_map)]
        return tuple(name for name, on in named if on)

    def item_stages(self) -> tuple[str, ...]:
        """What each coded item holds, by stage name, in the order the decoder reads it: the
        reference flags, the neighbour-repeat flags (counted per context, or ``adaptive_flags``),
        the symbols. Names only; ``coding.item_stage`` maps them to the stages."""
        flags = "adaptive_flags" if self.adaptive_flags else "neighbour_flags" if self.adapted_tables else None
        named = [("reference_flags", self.reference), (flags, flags is not None), ("symbols", True)]
        return tuple(name for name, on in named if on)

    def settings(self) -> dict[str, bool]:
        """The named settings (every field but the version and the declaration)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("version", "adds")}


def _declare(*settings: str) -> Profile:
    """The next version: the last declared one with ``settings`` switched on."""
    last = PROFILES[max(PROFILES)] if PROFILES else Profile(0)
    return replace(last, version=last.version + 1, adds=frozenset(settings), **{s: True for s in settings})


PROFILES: dict[int, Profile] = {}
for _settings in [
    (),                                    # 1: the network's fixed tables
    ("value_step", "scale_offsets"),       # 2: per-step scale offsets
    ("value_gaps", "adapted_tables"),      # 3: tables adapted to the slice, repeat flags, value gaps
    ("refined",),                          # 4: refinement and error feedback
    ("staged_latent", "wide_flags"),       # 5: staged latent tables, flag levels 3 and 4
    ("edge_classes", "min_flags"),         # 6: edge classes, flags at the minimum
    ("base_lattice",),                     # 7: JPEG-XL base lattice
    ("reference",),                        # 8: the previous slice as reference
    ("lattice_skip",),                     # 9: nothing computed for the base lattice's steps
    ("adaptive_flags",),                   # 10: repeat flags by the prediction, adapting within a stage
    ("block_map",),                        # 11: constant 8 x 8 blocks out of the pixel stream
]:
    _p = _declare(*_settings)
    PROFILES[_p.version] = _p
del _settings, _p

LATEST = max(PROFILES)


def profile(version: int) -> Profile:
    """The profile of bitstream ``version``; ValueError for a version this codec does not know."""
    try:
        return PROFILES[version]
    except (KeyError, TypeError):
        raise ValueError(f"lvpnet chunk version {version} is not supported (known: "
                         f"{', '.join(map(str, sorted(PROFILES)))})") from None
