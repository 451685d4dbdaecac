"""Speech: audio decoded with PyAV, resampled to 16 kHz mono, segmented by voice activity, recognised by a
backend; each segment becomes a timed cue (``transcripts.source = 'speech'``).

    >>> from engine.transcripts.asr import load_backend
    >>> asr = load_backend("pocketsphinx")
    >>> cues, warnings = asr.transcribe_file("talk.mp4")

Backends (``bike tag --text asr --asr pocketsphinx|whisper``):

- ``pocketsphinx``: CMU PocketSphinx 5 with the en-US acoustic model and language model shipped in its wheel.
  Real and offline, but weak: on espeak-ng's synthetic speech it recognises few words (bench/text.py measures
  the word recall, docs/text.md reports it). Voice activity: pocketsphinx's ``Segmenter`` (WebRTC-like VAD);
  each voiced segment is decoded separately, its span kept.
- ``whisper``: faster-whisper (CTranslate2), the quality choice, on the GPU where there is one. Its weights are
  downloaded once from the Hugging Face hub like open_clip's; offline, a missing model is a one-line error that
  says how to fetch it (``bike weights --asr whisper``-style: run once where there is network, or give a local
  folder with ``--whisper-model DIR``). It keeps faster-whisper's own VAD filter and segment timestamps.

Bounds: at most :data:`MAX_AUDIO_S` seconds of audio per video (then a warning); audio is decoded in a stream,
16-bit mono at 16 kHz (~1.9 MB per minute).
"""
from __future__ import annotations

import importlib.metadata as md

import numpy as np

from engine.transcripts import Cue, TextError, clean_text, open_media

RATE = 16_000
#: Audio read per video at most (seconds): 4 hours.
MAX_AUDIO_S = 4 * 3600


def decode_audio(path: str, max_s: float = MAX_AUDIO_S) -> "tuple[bytes, list[str]]":
    """The first audio stream of a file as 16-bit mono PCM at 16 kHz → (bytes, warnings); b"" when it has none."""
    import av
    container = open_media(path)
    warnings: list[str] = []
    chunks, n = [], 0
    limit = int(max_s * RATE) * 2
    with container:
        if not container.streams.audio:
            return b"", []
        rs = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        try:
            for frame in container.decode(container.streams.audio[0]):
                for out in rs.resample(frame):
                    b = bytes(out.planes[0])[: out.samples * 2]
                    chunks.append(b)
                    n += len(b)
                if n >= limit:
                    warnings.append(f"speech: only the first {max_s:g} s of audio were read")
                    break
            else:
                for out in rs.resample(None):
                    chunks.append(bytes(out.planes[0])[: out.samples * 2])
        except Exception as e:  # noqa: BLE001 - a decode error mid-file: keep what was read
            warnings.append(f"speech: audio decoding stopped at {n / 2 / RATE:.1f} s ({str(e)[:120]})")
    return b"".join(chunks)[:limit], warnings


class PocketSphinx:
    name = "pocketsphinx"

    def __init__(self):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise TextError(f"pocketsphinx is not installed ({e}); pip install \"bike[text]\"") from None
        self.version = md.version("pocketsphinx")
        self.decoder = Decoder(samprate=RATE, loglevel="FATAL")
        import threading
        self._lock = threading.Lock()            # one decoder, one utterance at a time (text stage threads)

    def transcribe_pcm(self, pcm: bytes) -> "list[Cue]":
        """Voice-activity segments of 16 kHz PCM, each decoded → cues (confidence: the posterior probability)."""
        from pocketsphinx import Segmenter
        seg = Segmenter(sample_rate=RATE)
        import io
        cues = []
        for s in seg.segment(io.BytesIO(pcm)):
            with self._lock:
                cues.extend(self._decode(s))
        return cues

    def _decode(self, s) -> "list[Cue]":
        if True:
            self.decoder.start_utt()
            self.decoder.process_raw(s.pcm, full_utt=True)
            self.decoder.end_utt()
            hyp = self.decoder.hyp()
            words = [w.word for w in self.decoder.seg() if not w.word.startswith(("<", "[")) and w.word != "(NULL)"]
            text = clean_text(" ".join(w.split("(")[0] for w in words))
            if hyp is not None and text:
                try:
                    prob = float(self.decoder.get_logmath().exp(hyp.prob))
                except Exception:  # noqa: BLE001 - a confidence is optional
                    prob = None
                return [Cue(float(s.start_time), float(s.end_time), text, prob)]
        return []

    def transcribe_file(self, path: str) -> "tuple[list[Cue], list[str]]":
        pcm, warnings = decode_audio(path)
        return (self.transcribe_pcm(pcm) if pcm else []), warnings


class Whisper:
    name = "whisper"

    def __init__(self, model: str = "base.en", device: "str | None" = None):
        try:
            import faster_whisper
        except ImportError:
            raise TextError("--asr whisper needs faster-whisper: pip install faster-whisper (its model weights "
                            "are then fetched once from the Hugging Face hub)") from None
        import torch
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.version = f"faster-whisper {md.version('faster-whisper')} {model}"
        try:
            self.model = faster_whisper.WhisperModel(model, device=device,
                                                     compute_type="float16" if device == "cuda" else "int8")
        except Exception as e:  # noqa: BLE001 - offline without the weights: say how to get them
            raise TextError(f"whisper model {model!r} is not available here ({type(e).__name__}); fetch it once "
                            f"where there is network: python -c \"import faster_whisper; "
                            f"faster_whisper.WhisperModel('{model}')\" (it lands in the Hugging Face cache; copy "
                            "~/.cache/huggingface to offline hosts), or give a local model folder with "
                            "--whisper-model DIR") from None

    def transcribe_file(self, path: str) -> "tuple[list[Cue], list[str]]":
        pcm, warnings = decode_audio(path)
        if not pcm:
            return [], warnings
        audio = np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0
        segments, _info = self.model.transcribe(audio, vad_filter=True)
        cues = [Cue(float(s.start), float(s.end), clean_text(s.text), float(np.exp(s.avg_logprob)))
                for s in segments if clean_text(s.text)]
        return cues, warnings


def load_backend(name: str, model: str = "base.en", device: "str | None" = None):
    """A speech backend by name: ``pocketsphinx`` or ``whisper``."""
    if name == "pocketsphinx":
        return PocketSphinx()
    if name == "whisper":
        return Whisper(model, device)
    raise TextError(f"--asr {name}: unknown speech backend (pocketsphinx, whisper)")
