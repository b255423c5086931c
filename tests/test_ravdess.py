"""``ravdess``: built from fake audio and video zips of four actors (1, 2 →
train, 21 → validation, 23 → test), config ``present_actors``."""

import io
import os
import sys
import zipfile
from fractions import Fraction

import av
import librosa
import numpy as np
import pytest
import soundfile

from ntdh_jax import data as data_lib
from ntdh_jax.data import archives
from ntdh_jax.data import logmel
from ntdh_jax.data import prepared
from ntdh_jax.data.builders import ravdess
from ntdh_jax.errors import UserError
from tests import prepared_util

CONFIG = "present_actors"
RATE = 48_000
W, H = 64, 48  # fake video: landscape, so the centre square is [8, 56)


class Fake:
  """One fake clip: its file-name codes and what its files hold."""

  def __init__(self, actor, emotion, intensity, statement, repetition,
               seconds=0.5, channels=1, n_frames=10, seed=0):
    self.codes = (emotion, intensity, statement, repetition, actor)
    self.actor, self.emotion = actor, emotion
    self.stem = "01-" + "-".join(f"{c:02d}" for c in self.codes)
    rng = np.random.default_rng([actor, seed])
    t = np.arange(int(seconds * RATE)) / RATE
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * emotion) * t)
    wave = tone[:, None] + 0.05 * rng.standard_normal((len(t), channels))
    self.samples = np.round(wave * 32767).astype(np.int16)  # [L, channels]
    # Frame i: one colour inside the centre square, white outside it.
    i = np.arange(n_frames)[:, None]
    self.colours = np.concatenate([20 + 15 * i, 200 - 10 * i,
                                   60 + 5 * i + 10 * (actor % 3)], axis=1)

  def wav(self, rate=RATE):
    buf = io.BytesIO()
    soundfile.write(buf, self.samples, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()

  def mp4(self, size=(W, H)):
    """Frame i: the colour i in the centre square, white outside it."""
    width, height = size
    left = (width - height) // 2
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
      stream = container.add_stream("libx264", rate=Fraction(30000, 1001))
      stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
      for colour in self.colours:
        frame = np.full((height, width, 3), 255, np.uint8)
        frame[:, left:left + height] = colour
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame,
                                                               "rgb24")):
          container.mux(packet)
      for packet in stream.encode():
        container.mux(packet)
    return buf.getvalue()

  def member(self, modality):
    ext = "wav" if modality == 3 else "mp4"
    return f"Actor_{self.actor:02d}/{modality:02d}-{self.stem}.{ext}"


FAKES = [
    Fake(1, 1, 1, 1, 1),
    Fake(1, 5, 2, 2, 1, seconds=4.5, n_frames=12, seed=1),  # cut to 3.98 s
    Fake(1, 8, 1, 1, 2, channels=2, seed=2),                # stereo
    Fake(2, 2, 1, 2, 2, n_frames=9),
    Fake(2, 4, 2, 1, 1, seconds=1.0, seed=1),
    Fake(2, 6, 1, 1, 1, seed=2),
    Fake(21, 3, 1, 1, 1),
    Fake(21, 7, 2, 2, 2, n_frames=16),
    Fake(23, 2, 2, 1, 1),
    Fake(23, 3, 1, 2, 2, n_frames=8),
]
SPLIT_ACTORS = {"train": (1, 2), "validation": (21,), "test": (23,)}


def write_zip(path, members):
  with zipfile.ZipFile(path, "w") as z:
    for name, data in members.items():
      z.writestr(name, data)


def write_fakes(manual, fakes=FAKES, size=(W, H)):
  """The audio zip and one video zip per actor of ``fakes``, videos of
  ``size`` (width, height)."""
  os.makedirs(manual, exist_ok=True)
  actors = sorted({f.actor for f in fakes})
  audio = {f"Actor_{a:02d}/": b"" for a in actors}
  audio.update({f.member(3): f.wav() for f in fakes})
  write_zip(os.path.join(manual, ravdess.AUDIO_ZIP), audio)
  for actor in actors:
    video = {}
    for f in fakes:
      if f.actor == actor:
        video[f.member(2)] = f.mp4(size)
        # The audio-video file is never read: garbage proves it.
        video[f.member(1)] = b"not read"
    write_zip(os.path.join(manual, ravdess.video_zip(actor)), video)


def rewrite(path, changes):
  """The zip at ``path`` with members replaced, added or (``None``)
  removed."""
  with zipfile.ZipFile(path) as z:
    members = {name: z.read(name) for name in z.namelist()}
  members.update(changes)
  write_zip(path, {k: v for k, v in members.items() if v is not None})


def reference_log_mel(samples):
  """float64 NumPy: ``i16[L, C]`` → dB ``[40, 256]``, written from the
  definition (only the mel filterbank comes from librosa)."""
  x = (samples.astype(np.float64) / 32768).mean(axis=1)
  kept = 255 * 750
  x = np.concatenate([x, np.zeros(max(0, kept - len(x)))])[:kept]
  x = np.concatenate([np.zeros(1024), x, np.zeros(1024)])
  n = np.arange(2048)
  hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / 2048)  # periodic
  frames = np.stack([x[t * 750:t * 750 + 2048] for t in range(256)])
  power = np.abs(np.fft.rfft(frames * hann, axis=1)) ** 2
  mel = librosa.filters.mel(sr=RATE, n_fft=2048, n_mels=40, fmin=0,
                            fmax=RATE / 2, dtype=np.float64)
  return 10 * np.log10(np.maximum(mel @ power.T, 1e-10))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  root = tmp_path_factory.mktemp("ravdess")
  write_fakes(root / "manual")
  prepared_util.build("ravdess", root / "manual", root / "data", CONFIG)
  return root


def _in_order(split):
  fakes = [f for f in FAKES if f.actor in SPLIT_ACTORS[split]]
  return sorted(fakes, key=lambda f: (f.actor, f.stem))


def test_records_hold_every_clip_with_its_codes(built):
  for split in SPLIT_ACTORS:
    rows = prepared.records("ravdess", CONFIG, str(built / "data"), split)
    by_stem = {str(np.asarray(r["stem"]).item().decode()): r for r in rows}
    fakes = _in_order(split)
    assert sorted(by_stem) == sorted(f.stem for f in fakes)
    for f in fakes:
      r = by_stem[f.stem]
      emotion, intensity, statement, repetition, actor = f.codes
      assert (int(r["label"]), int(r["actor"]), int(r["gender"]),
              int(r["intensity"]), int(r["statement"]),
              int(r["repetition"])) == (
                  emotion - 1, actor, 0 if actor % 2 else 1, intensity - 1,
                  statement - 1, repetition)
      assert float(r["duration"]) == pytest.approx(len(f.samples) / RATE)
      assert int(r["video_frames"]) == len(f.colours)
      np.testing.assert_allclose(r["audio"], reference_log_mel(f.samples),
                                 rtol=0, atol=1e-3)
      # Frames: segment centres of the decoded frames, centre-cropped. Lossy
      # H.264 with 4:2:0 chroma: means within a few levels, pixels within
      # 16 (measured <= 12; a pixel of the white bands would be >= 55 off in
      # green, which is <= 200 inside).
      n = len(f.colours)
      picks = np.floor((np.arange(8) + 0.5) * n / 8).astype(int)
      frames = np.asarray(r["frames"], np.float64)
      assert frames.shape == (8, 64, 64, 3)
      np.testing.assert_allclose(frames.mean(axis=(1, 2)), f.colours[picks],
                                 atol=5)
      assert np.abs(frames - f.colours[picks][:, None, None]).max() <= 16
  assert "tensorflow" not in sys.modules


def test_source_standardises_log_mels_with_train_statistics(built):
  config = {"name": "ravdess", "data_dir": str(built / "data"),
            "config": CONFIG}
  spec = data_lib.spec(config)
  assert spec.splits == {"train": 6, "test": 2} and spec.num_classes == 8
  assert spec.teacher.shape == (40, 256, 1) and spec.teacher.dtype == "float32"
  assert spec.student.shape == (64, 64, 3) and spec.student.dtype == "uint8"
  arrays = data_lib.load_arrays(config)
  train = np.stack([reference_log_mel(f.samples) for f in _in_order("train")])
  mean, std = train.mean(), train.std()
  for split in ("train", "test"):
    fakes = _in_order(split)
    want = np.stack([reference_log_mel(f.samples) for f in fakes])
    np.testing.assert_allclose(arrays[f"teacher_{split}"][..., 0],
                               (want - mean) / std, atol=1e-4)
    np.testing.assert_array_equal(arrays[f"y_{split}"],
                                  [f.emotion - 1 for f in fakes])
    # Default frame 4: decoded frame floor(4.5 n / 8).
    colours = [f.colours[int(4.5 * len(f.colours) / 8)] for f in fakes]
    np.testing.assert_allclose(
        arrays[f"student_{split}"].mean(axis=(1, 2)), colours, atol=5)
  first = data_lib.load_arrays({**config, "frame": 0})
  np.testing.assert_allclose(
      first["student_train"].mean(axis=(1, 2)),
      [f.colours[int(0.5 * len(f.colours) / 8)] for f in _in_order("train")],
      atol=5)


def test_model_input_is_imagenet_normalised_frames():
  import jax
  source, config = data_lib.parse({"name": "ravdess"})
  frames = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
  got = np.asarray(source.prepare(config, frames, "student", {},
                                  jax.random.PRNGKey(0)))
  want = (frames / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
  np.testing.assert_allclose(got, want, atol=1e-5)
  audio = np.random.default_rng(1).standard_normal((2, 40, 256, 1))
  np.testing.assert_array_equal(
      np.asarray(source.prepare(config, audio.astype(np.float32), "teacher",
                                {}, jax.random.PRNGKey(0))),
      audio.astype(np.float32))


@pytest.mark.parametrize("frame", [8, -1, True, 2.0])
def test_frame_option_is_checked(frame):
  with pytest.raises(ValueError, match=r"frame must be an integer in \[0, 8"):
    data_lib.parse({"name": "ravdess", "frame": frame})


def test_log_mel_matches_a_float64_reference_padded_and_cut():
  rng = np.random.default_rng(5)
  for seconds in (0.3, 3.5, 5.0):
    samples = np.round(rng.uniform(-0.5, 0.5, (int(seconds * RATE), 1))
                       * 32767).astype(np.int16)
    got = logmel.log_mel(samples[:, 0] / np.float32(32768), RATE, 2048, 750,
                         40, 256)
    assert got.shape == (40, 256) and got.dtype == np.float32
    np.testing.assert_allclose(got, reference_log_mel(samples), atol=1e-3)
  # Past the padded clip's last window: zeros, the −100 dB floor (float32's
  # 10·log10(1e-10): −100 exactly on some CPUs, −100.0000076 on AVX-512
  # ones, whose vector log rounds differently).
  silent = logmel.log_mel(np.zeros(100, np.float32), RATE, 2048, 750, 40, 256)
  np.testing.assert_allclose(silent, -100.0, rtol=1e-6)
  assert np.all(silent == silent.flat[0])


def test_wav_samples_are_read_exactly_and_stereo_is_averaged(tmp_path):
  samples = np.random.default_rng(2).integers(-32768, 32768, (500, 2))
  buf = io.BytesIO()
  soundfile.write(buf, samples.astype(np.int16), RATE, subtype="PCM_16",
                  format="WAV")
  write_zip(tmp_path / "a.zip", {"a.wav": buf.getvalue()})
  with zipfile.ZipFile(tmp_path / "a.zip") as z:
    got = ravdess.read_wave(z, "a.wav")
  # (a + b) / 2 / 32768 is exact in float32.
  np.testing.assert_array_equal(got, samples.mean(axis=1) / 32768)


def test_centre_square_keeps_the_middle():
  wide = np.full((30, 50, 3), 255, np.uint8)
  wide[:, 10:40] = (10, 20, 30)
  tall = np.transpose(wide, (1, 0, 2)).copy()
  for image in (wide, tall):
    out = ravdess.centre_square(image, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out == (10, 20, 30)).all()


def test_listed_and_refused_twice(built):
  rows = prepared.list_prepared(str(built / "data"))
  assert [(r["name"], r["config"], r["splits"]) for r in rows] == [
      ("ravdess", CONFIG, {"train": 6, "validation": 2, "test": 2})]
  with pytest.raises(UserError, match="already prepared"):
    prepared_util.build("ravdess", built / "manual", built / "data", CONFIG)


def test_tiny_kd_sweep_runs_end_to_end(built, tmp_path):
  prepared_util.tiny_kd_sweep(
      "ravdess", built / "data", tmp_path / "w", config=CONFIG,
      overrides=["train.eval_batch_size=4"])


# -- bad input ---------------------------------------------------------------

AUDIO = ravdess.AUDIO_ZIP
WAV = FAKES[3].member(3)   # Actor_02/03-01-02-01-02-02-02.wav
MP4 = FAKES[3].member(2)


def _short_video(manual):
  few = Fake(2, 2, 1, 2, 2, n_frames=5)
  rewrite(manual / ravdess.video_zip(2), {MP4: few.mp4()})


@pytest.mark.parametrize("damage, message", [
    (lambda m: os.remove(m / AUDIO),
     r"missing Audio_Speech_Actors_01-24.zip in --manual_dir"),
    (lambda m: prepared_util.truncate(m / AUDIO),
     r"Audio_Speech_Actors_01-24.zip: truncated or corrupt"),
    (lambda m: prepared_util.truncate(m / "Video_Speech_Actor_21.zip"),
     r"Video_Speech_Actor_21.zip: truncated or corrupt"),
    (lambda m: rewrite(m / AUDIO, {"Actor_01/notes.txt": b"x"}),
     r"Actors_01-24.zip \(member Actor_01/notes.txt\): not a RAVDESS file "
     r"name; expected Actor_AA/MM-01-EE"),
    (lambda m: rewrite(m / AUDIO, {"Actor_01/03-01-09-01-01-01-01.wav": b""}),
     r"\(member Actor_01/03-01-09-01-01-01-01.wav\): emotion code 09 is not "
     r"a RAVDESS speech code"),
    (lambda m: rewrite(m / AUDIO, {"Actor_02/03-01-03-01-01-01-01.wav": b""}),
     r"\(member Actor_02/03-01-03-01-01-01-01.wav\): actor 01 in folder "
     r"Actor_02"),
    (lambda m: rewrite(m / AUDIO, {WAV: b"RIFF, but not audio" * 10}),
     rf"Actors_01-24.zip \(member {WAV}\): not a readable WAV"),
    (lambda m: rewrite(m / AUDIO, {WAV: FAKES[3].wav(rate=16_000)}),
     rf"\(member {WAV}\): 24000 samples at 16000 Hz; expected RAVDESS's "
     r"48000 Hz"),
    (lambda m: rewrite(m / "Video_Speech_Actor_02.zip", {MP4: b"\0" * 999}),
     rf"Video_Speech_Actor_02.zip \(member {MP4}\): not a readable video"),
    (lambda m: rewrite(m / "Video_Speech_Actor_02.zip",
                       {MP4: FAKES[3].wav()}),
     rf"\(member {MP4}\): no video stream"),
    (_short_video,
     rf"\(member {MP4}\): 5 video frames, fewer than the 8 sampled"),
    (lambda m: rewrite(m / "Video_Speech_Actor_02.zip", {MP4: None}),
     rf"Actors_01-24.zip has {WAV} but .*Video_Speech_Actor_02.zip lacks "
     rf"{MP4}"),
    (lambda m: rewrite(m / AUDIO, {WAV: None}),
     rf"Video_Speech_Actor_02.zip has {MP4} but .*Actors_01-24.zip lacks "
     rf"{WAV}"),
    (lambda m: rewrite(m / "Video_Speech_Actor_21.zip",
                       {"Actor_23/02-01-03-01-01-01-23.mp4": b""}),
     r"Video_Speech_Actor_21.zip \(member Actor_23/02-01-03-01-01-01-23.mp4"
     r"\): a modality 02 file of actor 23, but the zip of actor 21 holds "
     r"only its"),
    (lambda m: os.remove(m / "Video_Speech_Actor_23.zip"),
     r"no video zip of the test split's actors 23-24 in --manual_dir"),
])
def test_bad_archives_are_refused_and_nothing_is_prepared(tmp_path, damage,
                                                         message):
  manual = tmp_path / "manual"
  write_fakes(manual)
  damage(manual)
  with pytest.raises(archives.ArchiveError, match=message):
    prepared_util.build("ravdess", manual, tmp_path / "data", CONFIG)
  assert prepared.list_prepared(str(tmp_path / "data")) == []
  if (tmp_path / "data").exists():
    assert not [p for p in os.listdir(tmp_path / "data")
                if p.startswith(".incomplete")]


def test_default_config_needs_every_actor(tmp_path):
  write_fakes(tmp_path / "manual")
  with pytest.raises(archives.ArchiveError,
                     match=r"missing Video_Speech_Actor_03.zip in "
                           r"--manual_dir"):
    prepared_util.build("ravdess", tmp_path / "manual", tmp_path / "data")
  assert prepared.list_prepared(str(tmp_path / "data")) == []


def test_published_size_is_enforced_by_default(tmp_path):
  write_fakes(tmp_path / "manual")
  with pytest.raises(archives.ArchiveError,
                     match=r"Audio_Speech_Actors_01-24.zip: [\d,]+ bytes, "
                           r"expected 208,468,073"):
    prepared.prepare("ravdess", str(tmp_path / "manual"),
                     data_dir=str(tmp_path / "d"), config=CONFIG)
