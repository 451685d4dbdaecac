"""On-screen text: rapidocr (PP-OCR detection + recognition ONNX models shipped in its wheel) on the frames
where the picture changed, merged into timed spans.

    >>> from engine.transcripts.ocr import OcrReader
    >>> spans, warnings = OcrReader().read_video("report.mp4")     # [Cue(start_s, end_s, text, confidence)]

Reading every frame is far too dear (~0.3-0.6 s per 640x360 frame on one CPU core), so:

1. frames are sampled at ``fps`` (default 2 per second) while decoding with PyAV;
2. a cheap difference test picks the frames to read: a 32x18 grey thumbnail compared with the thumbnail of the
   last frame read; OCR runs when some cell of it changed by more than ``change`` (default 10 grey levels
   of 255: a caption appearing changes the cells it covers, compression noise does not) or ``max_gap_s`` (default 10 s) passed (text can change on a still background);
3. each text line found (a detection box, its recognised text with score >= ``min_score``) opens a span; it
   stays open while the following OCR'd frames show the same text (or no OCR ran: nothing changed) and closes
   at the first frame read without it. So a caption shown from 2 s to 5 s is ONE span, not six.

Bounds: at most ``max_reads`` OCR calls and ``seconds`` of work per video (then a warning; what was read is
kept); frames are scaled down to at most ``width`` pixels wide first.
"""
from __future__ import annotations

import time

import numpy as np

from engine.transcripts import Cue, TextError, clean_text, open_media


class OcrReader:
    backend = "rapidocr"

    def __init__(self, fps: float = 2.0, change: float = 10.0, max_gap_s: float = 10.0, min_score: float = 0.5,
                 width: int = 960, max_reads: int = 5000, seconds: float = 1800.0):
        try:
            import rapidocr
            from rapidocr import RapidOCR
        except ImportError as e:
            raise TextError(f"OCR needs rapidocr and onnxruntime ({e}); pip install \"bike[text]\"") from None
        import logging
        logging.getLogger("RapidOCR").setLevel(logging.ERROR)
        self.version = getattr(rapidocr, "__version__", "?")
        self.engine = RapidOCR()
        self.fps, self.change, self.max_gap_s, self.min_score = fps, change, max_gap_s, min_score
        self.width, self.max_reads, self.seconds = width, max_reads, seconds
        self.reads = 0                          # OCR calls made (bench/text.py)

    def read_image(self, rgb: np.ndarray) -> "list[tuple[str, float]]":
        """Text lines of one RGB image → [(text, score)] with score >= min_score, top to bottom."""
        out = self.engine(np.ascontiguousarray(rgb[:, :, ::-1]))        # rapidocr expects BGR like OpenCV
        self.reads += 1
        txts, scores, boxes = getattr(out, "txts", None), getattr(out, "scores", None), getattr(out, "boxes", None)
        if not txts:
            return []
        order = np.argsort([float(np.asarray(b)[:, 1].min()) for b in boxes]) if boxes is not None else \
            range(len(txts))
        lines = []
        for i in order:
            t = clean_text(str(txts[i]))
            if t and float(scores[i]) >= self.min_score:
                lines.append((t, float(scores[i])))
        return lines

    def _frames(self, path: str):
        """(time, RGB frame) sampled at ``fps``, scaled to at most ``width`` wide."""
        container = open_media(path)
        with container:
            if not container.streams.video:
                return
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            step, next_t = 1.0 / self.fps, 0.0
            for frame in container.decode(stream):
                if frame.time is None or frame.time + 1e-6 < next_t:
                    continue
                next_t = frame.time + step
                w, h = frame.width, frame.height
                if w > self.width:
                    frame = frame.reformat(width=self.width, height=max(2, int(h * self.width / w)) // 2 * 2)
                yield float(frame.time), frame.to_ndarray(format="rgb24")

    def read_video(self, path: str) -> "tuple[list[Cue], list[str]]":
        """Timed on-screen text spans of a video (see the module docstring) → (spans by start, warnings)."""
        deadline = time.monotonic() + self.seconds
        spans: list[Cue] = []
        open_: dict = {}                        # text → [start, last seen, scores]
        last_thumb, last_read = None, -1e9
        warnings: list[str] = []
        t = 0.0
        reads = 0

        def close(text, end):
            start, _seen, scores = open_.pop(text)
            spans.append(Cue(start, max(end, start), text, float(np.mean(scores))))

        try:
            for t, rgb in self._frames(path):
                thumb = _thumb(rgb)
                changed = last_thumb is None or float(np.abs(thumb - last_thumb).max()) > self.change
                if not changed and t - last_read < self.max_gap_s:
                    for v in open_.values():
                        v[1] = t
                    continue
                if reads >= self.max_reads or time.monotonic() > deadline:
                    warnings.append(f"OCR stopped at {t:.1f} s ({reads} frames read; the limit per video)")
                    break
                lines = self.read_image(rgb)
                reads += 1
                last_thumb, last_read = thumb, t
                seen = {}
                for text, score in lines:
                    seen.setdefault(text, score)
                for text in list(open_):
                    if text not in seen:
                        close(text, t)
                for text, score in seen.items():
                    if text in open_:
                        open_[text][1] = t
                        open_[text][2].append(score)
                    else:
                        open_[text] = [t, t, [score]]
        except TextError:
            raise
        except Exception as e:  # noqa: BLE001 - a decode error mid-file: keep what was read
            warnings.append(f"OCR: decoding stopped at {t:.1f} s ({str(e)[:120]})")
        end = t + 1.0 / self.fps
        for text in list(open_):
            close(text, end)
        spans.sort(key=lambda c: (c.start_s, c.text))
        return spans, warnings


def _thumb(rgb: np.ndarray) -> np.ndarray:
    """A 32x18 grey thumbnail (block means), float32 0..255."""
    g = rgb.astype(np.float32).mean(axis=2)
    h, w = g.shape
    ys = np.linspace(0, h, 19).astype(int)
    xs = np.linspace(0, w, 33).astype(int)
    return np.array([[g[ys[i]:max(ys[i + 1], ys[i] + 1), xs[j]:max(xs[j + 1], xs[j] + 1)].mean()
                      for j in range(32)] for i in range(18)], np.float32)
