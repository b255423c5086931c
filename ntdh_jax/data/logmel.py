"""Fixed-length log-mel spectrograms of a waveform (RAVDESS's teacher view).

``log_mel(wave, ...)`` is the standard speech front end in three steps, all
with librosa (0.10/0.11; ``librosa.feature.melspectrogram`` and
``librosa.power_to_db``, the reference implementation most speech-emotion
code uses):

1. Fixed length: the waveform is cut, or zero-padded at the end, to
   ``(num_steps − 1) · hop`` samples, so that centred framing (frame ``t``
   centred on sample ``t · hop``, ``n_fft // 2`` zeros added at both ends)
   gives exactly ``num_steps`` frames for every clip.
2. Power spectrogram of Hann-windowed frames of ``n_fft`` samples
   (``|STFT|²``, no normalisation), then ``n_mels`` triangular mel filters
   over 0 … ``sample_rate / 2`` (librosa's default: Slaney's mel scale, each
   filter normalised to unit area).
3. Decibels against a fixed reference: ``10 · log10(max(S, 1e-10))``
   (``ref=1``, not the clip's maximum, so loudness, a cue of emotion and
   intensity, survives; ``top_db=None``, nothing is clipped from below
   except at the 1e-10 floor, i.e. −100 dB, which digital silence and the
   zero padding reach).

Samples are floats in [−1, 1) (16-bit PCM / 32768).
"""

from __future__ import annotations

import librosa
import numpy as np

# 10·log10 of this is the floor of the log-mel values (−100 dB).
AMIN = 1e-10


def fit_length(wave: np.ndarray, length: int) -> np.ndarray:
  """``f32[L]`` → ``f32[length]``: the first ``length`` samples, or the wave
  followed by zeros."""
  if len(wave) >= length:
    return wave[:length]
  return np.pad(wave, (0, length - len(wave)))


def log_mel(wave: np.ndarray, sample_rate: int, n_fft: int, hop: int,
            n_mels: int, num_steps: int) -> np.ndarray:
  """``f32[L]`` mono samples → ``f32[n_mels, num_steps]`` log-mel power in
  dB (see the module docstring)."""
  wave = fit_length(np.asarray(wave, np.float32), (num_steps - 1) * hop)
  power = librosa.feature.melspectrogram(
      y=wave, sr=sample_rate, n_fft=n_fft, hop_length=hop, win_length=n_fft,
      window="hann", center=True, pad_mode="constant", power=2.0,
      n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2, htk=False,
      norm="slaney")
  return librosa.power_to_db(power, ref=1.0, amin=AMIN,
                             top_db=None).astype(np.float32)
