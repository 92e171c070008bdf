"""Whether a DICOM file's pixel data went through lossy compression.

An archive can be no better than its source: ``lvpnet compress`` refuses a
lossy source unless the user says ``--allow-lossy-source``. A file counts as
lossy when

- ``LossyImageCompression`` (0028,2110) is ``01``, whatever its transfer syntax;
- its transfer syntax is lossy by definition (JPEG baseline / extended and the
  retired lossy JPEG processes, JPEG XL JPEG recompression, MPEG / HEVC video);
- its transfer syntax allows both and the codestream says lossy: JPEG 2000
  (``.4.91``, ``.4.93``, HTJ2K ``.4.203``) coded with the irreversible 9/7
  wavelet (COD marker), JPEG-LS near-lossless (``.4.81``) with NEAR > 0 (SOS
  marker), JPEG lossless (``.4.57``, ``.4.70``) whose frames are in fact DCT
  coded (SOF marker), JPEG XL (``.4.112``) unless ``LossyImageCompression`` is
  ``00``. A codestream whose headers cannot be parsed counts as lossy. The
  lossless-only JPEG 2000 (``.4.90``, HTJ2K ``.4.201``, ``.4.202``) and JPEG-LS
  (``.4.80``) codestreams are read the same way: a writer may mislabel them.
"""

from __future__ import annotations

from typing import Any

# transfer syntax -> why it is lossy by definition
_ALWAYS_LOSSY = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    **{
        f"1.2.840.10008.1.2.4.{n}": "lossy JPEG (retired process)"
        for n in (52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64)
    },
    "1.2.840.10008.1.2.4.111": "JPEG XL JPEG recompression (a lossy JPEG underneath)",
    **{f"1.2.840.10008.1.2.4.{n}": "MPEG / HEVC video" for n in range(100, 109)},
}
_J2K_MAYBE_LOSSY = {"1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203"}
_JLS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81"
# lossless-only transfer syntaxes, whose codestreams are read all the same: a writer that labels a lossy
# codestream lossless (an irreversible JPEG 2000 under .4.90, NEAR = 3 under .4.80) would otherwise have its
# lossy history dropped when the file is restored as Explicit VR Little Endian
_J2K_LOSSLESS_ONLY = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"}
_JLS_LOSSLESS = "1.2.840.10008.1.2.4.80"
_JPEG_LOSSLESS = {"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG_XL_ANY = "1.2.840.10008.1.2.4.112"

_LOSSLESS_SOF = {0xC3, 0xC7, 0xCB, 0xCF}  # lossless Huffman / arithmetic processes


def lossy_reason(ds: Any, transfer_syntax: str, frames: list[bytes] | None) -> str | None:
    """Why this file is a lossy source, or None when it is not.

    ``frames`` are the encapsulated frames (codestreams) of a compressed file.
    """
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag == "01":
        return "LossyImageCompression is 01"
    if transfer_syntax in _ALWAYS_LOSSY:
        return f"{_ALWAYS_LOSSY[transfer_syntax]} transfer syntax {transfer_syntax}"
    frames = frames or []
    if transfer_syntax in _J2K_MAYBE_LOSSY | _J2K_LOSSLESS_ONLY:
        for i, f in enumerate(frames):
            wavelet = _j2k_wavelet(f)
            if wavelet != 1:
                what = "the irreversible 9/7 wavelet" if wavelet == 0 else "a codestream whose wavelet cannot be read"
                return f"JPEG 2000 frame {i} uses {what}"
    elif transfer_syntax in (_JLS_NEAR_LOSSLESS, _JLS_LOSSLESS):
        for i, f in enumerate(frames):
            near = _jls_near(f)
            if near != 0:
                return f"JPEG-LS near-lossless frame {i} has NEAR={near if near is not None else 'unreadable'}"
    elif transfer_syntax in _JPEG_LOSSLESS:
        for i, f in enumerate(frames):
            sof = _jpeg_sof(f)
            if sof not in _LOSSLESS_SOF:
                return f"JPEG frame {i} is not coded with a lossless process (SOF {sof if sof is None else hex(sof)})"
    elif transfer_syntax == _JPEG_XL_ANY and flag != "00":
        return "JPEG XL transfer syntax that allows lossy coding, without LossyImageCompression 00"
    return None


def _j2k_wavelet(frame: bytes) -> int | None:
    """The COD marker's transformation: 1 reversible 5/3, 0 irreversible 9/7, None unknown."""
    pos = frame.find(b"\xff\x4f\xff\x51")  # SOC then SIZ (also inside a JP2 box wrapper)
    if pos < 0:
        return None
    pos += 2
    while pos + 4 <= len(frame):
        marker = frame[pos + 1]
        if frame[pos] != 0xFF or marker in (0x90, 0x93, 0xD9):  # SOT, SOD, EOC: main header ended
            return None
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if marker == 0x52:  # COD: Lcod Scod SGcod(4) levels xcb ycb style transformation
            return frame[pos + 13] if pos + 13 < len(frame) else None
        pos += 2 + length
    return None


def _jls_near(frame: bytes) -> int | None:
    """Largest NEAR of the JPEG-LS scans (0 is lossless), None when no scan is found."""
    nears = []
    pos = frame.find(b"\xff\xda")
    while pos >= 0:  # JPEG-LS bit stuffing keeps FF DA out of scan data
        if pos + 5 > len(frame):
            return None
        ns = frame[pos + 4]
        at = pos + 5 + 2 * ns
        if at >= len(frame):
            return None
        nears.append(frame[at])
        pos = frame.find(b"\xff\xda", pos + 2)
    return max(nears) if nears else None


def _jpeg_sof(frame: bytes) -> int | None:
    """The SOF marker (second byte) of a JPEG codestream."""
    if not frame.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        if marker == 0xDA:
            return None
        pos += 2 + int.from_bytes(frame[pos + 2 : pos + 4], "big")
    return None
