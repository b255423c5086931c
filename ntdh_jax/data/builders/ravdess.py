"""``ravdess``: RAVDESS speech, log-mel audio (teacher) and face-video frames
(student), 8 emotions.

The NTDH paper's RAVDESS experiment (elonchern/Non-target-Divergence-
Hypothesis ``ravdess/``, reusing zihuixue/MFH ``ravdess/``): an audio
network teaches an image network; the label is the emotion. Neither
repository has preprocessing code (their features, images and split CSVs
come from the authors' Google Drive), so the features and the split here are
ours, chosen near what their models read: audio ``1×40×256`` (40 mel bands ×
256 frames) and one video frame per clip.

Dataset: Livingstone & Russo, "The Ryerson Audio-Visual Database of
Emotional Speech and Song (RAVDESS)", PLoS ONE 13(5), 2018; Zenodo record
1188976. 24 actors (odd = male, even = female), two statements, 8 emotions;
speech: per actor 4 neutral + 7 emotions × 2 intensities × 2 statements × 2
repetitions = 60 clips, 1,440 in all. Song (6 emotions) is left out.

Archives (``manual_dir``, flat, as downloaded, not extracted):

* ``Audio_Speech_Actors_01-24.zip`` (published size 208,468,073 bytes,
  checked unless ``--skip_checksums``; no SHA-256 is published):
  ``Actor_XX/03-01-EE-II-SS-RR-XX.wav``, 16-bit PCM, 48 kHz;
* ``Video_Speech_Actor_01.zip`` … ``Video_Speech_Actor_24.zip`` (0.5–0.6 GB
  each, sizes unpublished): ``Actor_XX/01-01-…mp4`` (audio-video) and
  ``Actor_XX/02-01-…mp4`` (video only), H.264 1280×720.

File names (the RAVDESS README; PMC7927770, Table 3):
``modality-channel-emotion-intensity-statement-repetition-actor``: modality
01 audio-video, 02 video-only, 03 audio-only; channel 01 speech; emotion 01
neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08
surprised; intensity 01 normal, 02 strong (none for neutral); statement 01
"Kids are talking by the door", 02 "Dogs are sitting by the door";
repetition 01–02; actor 01–24. A member whose name does not parse so (or
whose actor differs from its folder or zip) is an error naming it; folders
and OS metadata (``__MACOSX/``, dot files) are skipped.

Pairing: the wav ``03-01-EE-II-SS-RR-AA`` with the video-only mp4
``02-01-EE-II-SS-RR-AA`` (the same recording). The video-only file, not the
audio-video ``01`` one, because the student's input must be the face alone:
we decode only the picture, which is the same in both, and the ``02`` file
cannot carry the teacher's signal by construction. A wav without its mp4 (or
an mp4 without its wav) is an error naming both files.

Actors (builder configs): ``default`` builds all 24 and needs every video
zip; ``present_actors`` builds the actors whose video zip is in
``manual_dir`` (up to 12 GB less to download for a trial), with at least
one actor in each split. Only zips are read (not extracted folders).

Split, actor-wise (speaker-independent: no face or voice of a test actor is
seen in training; the papers' split is not published, and a random split
of clips would put every test actor's other clips in training): train
actors 1–20 (1,200 clips), validation 21–22 (120), test 23–24 (120); each
split has male and female actors.

Decoders (the ``data`` extra pins them in setup.cfg): soundfile for the wav
(libsndfile; reads 16-bit PCM exactly, from the zip's bytes), librosa for
the log-mel (the reference ``melspectrogram``/``power_to_db``), PyAV for
the mp4 (FFmpeg's libraries inside its wheel: no system ffmpeg and no
subprocess, decodes from bytes, so nothing is extracted to disk).

Build (``Builder``), per clip:

1. Audio: the wav's samples as floats (int16 / 32768), channels
   averaged (RAVDESS is mono; a stereo file is mixed down), sample rate
   checked (48 kHz, else an error naming the file). Log-mel with librosa
   (``ntdh_jax.data.logmel``): the first 3.98 s (255 hops of 750 samples),
   zero-padded at the end if shorter, Hann windows of 2048 samples (42.7
   ms) every 750 samples (15.6 ms), 40 Slaney mel bands over 0–24 kHz,
   ``10·log10(max(power, 1e-10))`` dB → ``f32[40, 256]``. Speech clips
   last about 3–5 s, so the end of the longer ones is cut: ``duration``
   keeps each clip's length and the build logs how many were cut.
2. Video: every frame of the mp4's first video stream is decoded;
   ``NUM_FRAMES`` = 8 frames at the centres of 8 equal segments (frame
   ``floor((k + ½)·n / 8)`` of ``n``, evenly spread in time at RAVDESS's
   constant frame rate); each is cropped to its centred square (720×720 of
   1280×720, where the actor faces the camera in the middle; the sides are
   background) and resized to 64×64 with Pillow's antialiased bilinear
   filter. Simplification: no face detector or alignment (the papers'
   images come pre-cropped from their Drive, method unpublished).

Features: ``audio`` f32[40, 256] (dB), ``frames`` u8[8, 64, 64, 3],
``label`` (8 emotions in code order, label = emotion code − 1), ``actor``
(1–24), ``gender`` (male, female), ``intensity`` (normal, strong),
``statement`` (kids, dogs), ``repetition`` (1, 2), ``duration`` (the wav's
seconds), ``video_frames`` (decoded frames), ``stem``
(``01-EE-II-SS-RR-AA``, the file names without the modality). 139 kB per
clip before array_record's compression: at most 200 MB for the 1,440 clips
(the fakes' flat frames compress to 46 kB per clip; real faces less so).

Source ``ravdess`` (``data.name = "ravdess"``): splits train and test
(validation stays in the TFDS dataset), rows in (actor, stem) order.

* Teacher ``log_mel`` ``f32[40, 256, 1]``: standardised with the mean and
  standard deviation of every value of the train split's log-mels (one
  scalar pair, the form of the papers' ``Normalize(−10.59, 85.66)``, whose
  constants belong to their unpublished features), applied to train and
  test at load time.
* Student ``face_frame`` ``u8[64, 64, 3]``: stored frame ``frame`` (option,
  default 4, the segment centred at 56 % of the clip); model input
  ``(x/255 − mean)/std`` with ImageNet's mean and std, as the papers
  normalise their images.

Host arrays of the default source config: teacher 1,320 × 40 kB = 54 MB,
student 1,320 × 12 kB = 16 MB (load reads each split's records once, ~170
MB for train, then keeps one frame).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import logging
import os
import re
import zipfile
from typing import NamedTuple

import av
import jax.numpy as jnp
import numpy as np
import soundfile
import tensorflow_datasets as tfds
from PIL import Image

from ntdh_jax.data import archives
from ntdh_jax.data import logmel
from ntdh_jax.data import prepared
from ntdh_jax.data import source
from ntdh_jax.errors import UserError

_LOG = logging.getLogger(__name__)

NAME = "ravdess"
_URL = "https://zenodo.org/records/1188976/files/{}?download=1"
AUDIO_ZIP = "Audio_Speech_Actors_01-24.zip"
ACTORS = tuple(range(1, 25))


def video_zip(actor: int) -> str:
  return f"Video_Speech_Actor_{actor:02d}.zip"


AUDIO_ARCHIVE = archives.Archive(AUDIO_ZIP, _URL.format(AUDIO_ZIP),
                                 208_468_073)
VIDEO_ARCHIVES = {a: archives.Archive(video_zip(a), _URL.format(video_zip(a)))
                  for a in ACTORS}
ARCHIVES = (AUDIO_ARCHIVE, *VIDEO_ARCHIVES.values())
SPLITS = {"train": tuple(range(1, 21)), "validation": (21, 22),
          "test": (23, 24)}
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
            "surprised")

# Audio front end (see the module docstring): 256 frames of 750 samples.
SAMPLE_RATE = 48_000
N_FFT = 2048
HOP = 750
N_MELS = 40
NUM_STEPS = 256
# The audio kept: 191,250 samples, 3.98 s (centred frames 0, 750, ...).
KEPT_SAMPLES = (NUM_STEPS - 1) * HOP
# Video frames kept per clip and their side.
NUM_FRAMES = 8
FRAME_SIZE = 64
# ImageNet's RGB mean and std (the papers' image normalisation).
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)

_MEMBER = re.compile(r"Actor_(\d\d)/((?:\d\d-){6}\d\d)\.([a-z0-9]+)")
# The valid codes of each field of a speech file name; intensity 02 is
# further refused for neutral (emotion 01).
_CODES = {"modality": (1, 2, 3), "vocal channel": (1,),
          "emotion": tuple(range(1, 9)), "intensity": (1, 2),
          "statement": (1, 2), "repetition": (1, 2), "actor": ACTORS}
_EXTENSION = {1: "mp4", 2: "mp4", 3: "wav"}
_PATTERN = ("Actor_AA/MM-01-EE-II-SS-RR-AA.ext (MM 03 .wav or 01/02 .mp4, "
            "EE 01-08, II 01-02 (01 for neutral), SS, RR 01-02, AA 01-24 "
            "as in the folder)")


def check_archives(manual_dir: str, verify: bool) -> dict[str, str]:
  """The audio zip (and its published size, with ``verify``) and the video
  zips present; which video zips are required is the builder config's
  business (``Builder._actors``)."""
  present = [a for a in VIDEO_ARCHIVES.values()
             if os.path.isfile(os.path.join(manual_dir, a.name))]
  return archives.check(manual_dir, (AUDIO_ARCHIVE, *present), verify, NAME)


class Clip(NamedTuple):
  """The codes of one RAVDESS file name."""
  modality: int
  emotion: int
  intensity: int
  statement: int
  repetition: int
  actor: int

  @property
  def stem(self) -> str:
    """The name without the modality: the key shared by a clip's files."""
    return "-".join(f"{c:02d}" for c in (1, *self[1:]))

  @property
  def member(self) -> str:
    """Its name in the zip (the only one ``parse_member`` accepts)."""
    return (f"Actor_{self.actor:02d}/{self.modality:02d}-{self.stem}."
            f"{_EXTENSION[self.modality]}")


def _skipped(member: str) -> bool:
  """Folders, and metadata that zip tools of macOS and others add."""
  base = member.rstrip("/").rsplit("/", 1)[-1]
  return (member.endswith("/") or member.startswith("__MACOSX/")
          or base.startswith("."))


def parse_member(path: str, member: str) -> Clip:
  """The codes of ``member`` of the zip at ``path``; an ``ArchiveError``
  naming both, the offending field and the expected pattern otherwise."""
  match = _MEMBER.fullmatch(member)
  problem = None if match else "not a RAVDESS file name"
  if match:
    folder, stem, extension = match.groups()
    codes = dict(zip(_CODES, (int(c) for c in stem.split("-"))))
    bad = [f for f, c in codes.items() if c not in _CODES[f]]
    if bad:
      problem = (f"{bad[0]} code {codes[bad[0]]:02d} is not a RAVDESS speech "
                 "code")
    elif codes["emotion"] == 1 and codes["intensity"] == 2:
      problem = "neutral has no strong intensity"
    elif int(folder) != codes["actor"]:
      problem = f"actor {codes['actor']:02d} in folder Actor_{folder}"
    elif extension != _EXTENSION[codes["modality"]]:
      problem = (f"modality {codes['modality']:02d} with extension "
                 f".{extension}")
  if problem:
    raise archives.ArchiveError(
        f"{path} (member {member}): {problem}; expected {_PATTERN}.")
  return Clip(codes["modality"], *(codes[f] for f in list(_CODES)[2:]))


def index(path: str, archive: zipfile.ZipFile,
          actor: int | None = None) -> dict[int, dict[str, Clip]]:
  """``{actor: {stem: clip}}`` of the wavs of the audio zip
  (``actor=None``) or the video-only mp4s of ``actor``'s video zip; every
  member's name is checked, and so is its place (03 files in the audio zip,
  01 and 02 files of ``actor`` in its video zip)."""
  allowed, kept = ((3,), 3) if actor is None else ((1, 2), 2)
  found = collections.defaultdict(dict)
  for member in archive.namelist():
    if _skipped(member):
      continue
    clip = parse_member(path, member)
    if clip.modality not in allowed or actor not in (None, clip.actor):
      holds = ("the audio zip holds only 03 (.wav) files" if actor is None
               else f"the zip of actor {actor:02d} holds only its 01 and 02 "
                    "(.mp4) files")
      raise archives.ArchiveError(
          f"{path} (member {member}): a modality {clip.modality:02d} file of "
          f"actor {clip.actor:02d}, but {holds}.")
    if clip.modality == kept:
      found[clip.actor][clip.stem] = clip
  return found


def read_wave(archive: zipfile.ZipFile, member: str) -> np.ndarray:
  """The samples of a wav member, ``f32[L]`` in [−1, 1) (channels averaged);
  an ``ArchiveError`` naming it if it is not audio at ``SAMPLE_RATE``."""
  data = archives.read_member(archive, member)
  where = f"{archive.filename} (member {member})"
  try:
    wave, rate = soundfile.read(io.BytesIO(data), dtype="float32",
                                always_2d=True)
  except soundfile.SoundFileError as e:
    raise archives.ArchiveError(
        f"{where}: not a readable WAV ({e}); expected 16-bit PCM at "
        f"{SAMPLE_RATE} Hz.") from e
  if rate != SAMPLE_RATE or not len(wave):
    raise archives.ArchiveError(
        f"{where}: {len(wave)} samples at {rate} Hz; expected RAVDESS's "
        f"{SAMPLE_RATE} Hz audio.")
  return wave.mean(axis=1)


def segment_centres(n: int, k: int) -> np.ndarray:
  """``i32[k]``: frame ``floor((j + ½)·n / k)`` of ``n``, j = 0 … k−1."""
  return (np.arange(k) * 2 + 1) * n // (2 * k)


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
  """``u8[H, W, 3]`` → its centred ``min(H, W)`` square resized to
  ``u8[size, size, 3]`` (Pillow's bilinear filter, antialiased when
  shrinking)."""
  h, w = rgb.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  square = Image.fromarray(rgb[top:top + side, left:left + side])
  return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))


def read_frames(archive: zipfile.ZipFile, member: str) -> tuple[
    np.ndarray, int]:
  """``NUM_FRAMES`` evenly spaced frames of an mp4 member, centre-cropped
  and resized, ``u8[NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3]``, and the number
  of frames decoded; an ``ArchiveError`` naming it if it is not a video of
  at least ``NUM_FRAMES`` frames."""
  data = archives.read_member(archive, member)
  where = f"{archive.filename} (member {member})"
  try:
    with av.open(io.BytesIO(data)) as container:
      if not container.streams.video:
        raise archives.ArchiveError(f"{where}: no video stream; expected "
                                    "RAVDESS's H.264 video.")
      stream = container.streams.video[0]
      # Every frame is kept (n is known only at the end; ~150 MB at 720p).
      decoded = list(container.decode(stream))
  except av.FFmpegError as e:
    raise archives.ArchiveError(
        f"{where}: not a readable video ({e}); expected RAVDESS's H.264 "
        "mp4.") from e
  if len(decoded) < NUM_FRAMES:
    raise archives.ArchiveError(
        f"{where}: {len(decoded)} video frames, fewer than the {NUM_FRAMES} "
        "sampled per clip.")
  frames = [centre_square(decoded[i].to_ndarray(format="rgb24"), FRAME_SIZE)
            for i in segment_centres(len(decoded), NUM_FRAMES)]
  return np.stack(frames), len(decoded)


@dataclasses.dataclass
class RavdessConfig(tfds.core.BuilderConfig):
  """``actors``: the actors built (each needs its video zip); ``None``: the
  actors whose video zip is in manual_dir."""
  actors: tuple[int, ...] | None = ACTORS


class Builder(tfds.core.GeneratorBasedBuilder):
  """RAVDESS speech: log-mel of the wav, frames of the video-only mp4."""
  name = NAME
  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Speech, 40×256 log-mel + 8 frames of 64×64, "
                            "actor-wise 20/2/2 split."}
  BUILDER_CONFIGS = [
      RavdessConfig(name="default", actors=ACTORS,
                    description="all 24 actors, 1,440 clips; every video "
                                "zip required"),
      RavdessConfig(name="present_actors", actors=None,
                    description="the actors whose video zip is in "
                                "manual_dir; at least one per split: "
                                "train 1-20, validation 21-22, test "
                                "23-24"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put these files from https://zenodo.org/records/1188976, as "
      "downloaded (zipped), directly in manual_dir (config present_actors "
      "needs only some of the video zips):\n"
      + "".join(f"  {a.name}  ({a.url})\n" for a in ARCHIVES))

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "audio": tfds.features.Tensor(shape=(N_MELS, NUM_STEPS),
                                          dtype=np.float32),
            "frames": tfds.features.Tensor(
                shape=(NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 3),
                dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=EMOTIONS),
            "actor": tfds.features.Scalar(dtype=np.int32),
            "gender": tfds.features.ClassLabel(names=("male", "female")),
            "intensity": tfds.features.ClassLabel(names=("normal", "strong")),
            "statement": tfds.features.ClassLabel(names=("kids", "dogs")),
            "repetition": tfds.features.Scalar(dtype=np.int32),
            "duration": tfds.features.Scalar(dtype=np.float32),
            "video_frames": tfds.features.Scalar(dtype=np.int32),
            "stem": tfds.features.Text(),
        }),
        supervised_keys=None,
        homepage="https://zenodo.org/records/1188976",
    )

  def _actors(self, manual_dir: str, paths: dict[str, str]) -> list[int]:
    """The actors to build; an ``ArchiveError`` names what is missing."""
    wanted = self.builder_config.actors
    if wanted is not None:
      archives.check(manual_dir, [VIDEO_ARCHIVES[a] for a in wanted], False,
                     NAME)
      return list(wanted)
    present = [a for a in ACTORS if video_zip(a) in paths]
    for split, actors in SPLITS.items():
      if not set(actors) & set(present):
        raise archives.ArchiveError(
            f"{NAME} (config present_actors): no video zip of the {split} "
            f"split's actors {actors[0]}-{actors[-1]} in --manual_dir "
            f"{manual_dir}; put at least one of {video_zip(actors[0])} … "
            f"{video_zip(actors[-1])} there (every split needs an actor).")
    return present

  def _split_generators(self, dl_manager):
    manual_dir = str(dl_manager.manual_dir)
    paths = check_archives(manual_dir, verify=False)
    actors = self._actors(manual_dir, paths)
    with archives.open_zip(paths[AUDIO_ZIP]) as audio:
      wavs = index(paths[AUDIO_ZIP], audio)
    return {split: self._generate_examples(
        split, paths, wavs, [a for a in actors if a in split_actors])
            for split, split_actors in SPLITS.items()}

  def _generate_examples(self, split, paths, wavs, actors):
    audio_path = paths[AUDIO_ZIP]
    cut = total = 0
    with archives.open_zip(audio_path) as audio:
      for actor in actors:
        video_path = paths[video_zip(actor)]
        with archives.open_zip(video_path) as video:
          mp4s = index(video_path, video, actor).get(actor, {})
          _check_pairs(audio_path, wavs.get(actor, {}), video_path, mp4s,
                       actor)
          for stem, clip in sorted(wavs[actor].items()):
            wave = read_wave(audio, clip.member)
            frames, n = read_frames(video, mp4s[stem].member)
            cut += len(wave) > KEPT_SAMPLES
            total += 1
            yield stem, {
                "audio": logmel.log_mel(wave, SAMPLE_RATE, N_FFT, HOP,
                                        N_MELS, NUM_STEPS),
                "frames": frames,
                "label": clip.emotion - 1,
                "actor": clip.actor,
                "gender": 1 - clip.actor % 2,
                "intensity": clip.intensity - 1,
                "statement": clip.statement - 1,
                "repetition": clip.repetition,
                "duration": len(wave) / SAMPLE_RATE,
                "video_frames": n,
                "stem": stem,
            }
    _LOG.info("%s %s: %d clips; %d wavs longer than %.2f s cut to it.",
              NAME, split, total, cut, KEPT_SAMPLES / SAMPLE_RATE)


def _check_pairs(audio_path, wavs, video_path, mp4s, actor):
  """Every wav of ``actor`` has its video-only mp4 and vice versa."""
  if not wavs:
    raise archives.ArchiveError(
        f"{audio_path}: no wav of actor {actor:02d}; expected "
        f"Actor_{actor:02d}/03-01-EE-II-SS-RR-{actor:02d}.wav files.")
  for stem in sorted(set(wavs) ^ set(mp4s)):
    clip = wavs.get(stem) or mp4s[stem]
    wav, mp4 = (clip._replace(modality=m).member for m in (3, 2))
    has, lacks = ((f"{audio_path} has {wav}", f"{video_path} lacks {mp4}")
                  if stem in wavs else
                  (f"{video_path} has {mp4}", f"{audio_path} lacks {wav}"))
    raise archives.ArchiveError(
        f"{has} but {lacks}: each speech wav is paired with the video-only "
        "mp4 of the same clip.")


@dataclasses.dataclass(frozen=True)
class RavdessSourceConfig(prepared.PreparedConfig):
  """Options of the ``ravdess`` source.

  Attributes:
    frame: which of the ``NUM_FRAMES`` stored frames is the student's image
      (default 4: the segment centred at 56 % of the clip).
  """
  frame: int = NUM_FRAMES // 2

  def __post_init__(self):
    if (isinstance(self.frame, bool) or not isinstance(self.frame, int)
        or not 0 <= self.frame < NUM_FRAMES):
      raise ValueError(f"frame must be an integer in [0, {NUM_FRAMES}) (one "
                       f"of the {NUM_FRAMES} stored frames), got "
                       f"{self.frame!r}.")


class RavdessSource(prepared.PreparedSource):
  """Prepared ``ravdess``: log-mel audio (teacher) → face frame (student)."""
  name = NAME
  Config = RavdessSourceConfig
  hparams = {}

  def modalities(self, config, path):
    del config, path
    return (source.Modality("log_mel", (N_MELS, NUM_STEPS, 1), "float32"),
            source.Modality("face_frame", (FRAME_SIZE, FRAME_SIZE, 3),
                            "uint8"), len(EMOTIONS), (), None)

  def arrays(self, config, split, rows):
    del split
    # (actor, stem) order: independent of TFDS's hashed storage order.
    order = np.lexsort((prepared.stack(rows, "stem"),
                        prepared.stack(rows, "actor")))
    return {"teacher": prepared.stack(rows, "audio", np.float32)[order, ...,
                                                                  None],
            "student": prepared.stack(rows, "frames")[order, config.frame],
            "y": prepared.stack(rows, "label", np.int32)[order]}

  def load(self, config):
    """The stored views, log-mels standardised with the train split's mean
    and standard deviation (over all values, in float64)."""
    arrays = super().load(config)
    train = arrays["teacher_train"].astype(np.float64)
    mean, std = train.mean(), train.std()
    if not std > 0:
      raise UserError(f"{NAME}: every train log-mel value is {mean} dB; "
                      "the prepared audio is silent, prepare it again.")
    for split in self.splits:
      key = f"teacher_{split}"
      arrays[key] = ((arrays[key] - mean) / std).astype(np.float32)
    return arrays

  def prepare(self, config, x, modality, hparams, key):
    """Teacher rows are model input already; student ``u8[B, 64, 64, 3]`` →
    ``f32`` ``(x/255 − mean)/std`` with ImageNet's statistics."""
    del config, hparams, key
    if modality == "teacher":
      return jnp.asarray(x, jnp.float32)
    x = jnp.asarray(x).astype(jnp.float32) / 255.0
    return (x - jnp.asarray(IMAGE_MEAN)) / jnp.asarray(IMAGE_STD)


SOURCE = source.register(RavdessSource())
