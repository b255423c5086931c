"""Sweep configs: Python files in the big_vision / scenic convention.

A config file ``sweeps/configs/NAME.py`` defines

* ``get_config(arg=None) -> ml_collections.ConfigDict``; ``arg`` is the text
  after the colon in ``NAME.py:arg`` (a variant name or ``key=value,...``),
  typically read with ``parse_arg``;
* optionally ``get_hyper(h)``, returning the sweep as ``h.product([...])``,
  ``h.sweep("config.key", values)`` and ``h.zipit([...])``: a list of
  override dicts, each turning the base config into one sweep point.

Overrides (``key=value`` from the command line, or a ``get_hyper`` dict) may
only set existing fields, to a value of the field's type: a typo is an error
naming the key, never a silently ignored new field. Keys may carry a leading
``config.`` (as ``get_hyper`` writes them).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import re
from typing import Any, Mapping, Sequence

import ml_collections

from ntdh_jax import models
from ntdh_jax.errors import UserError

ConfigDict = ml_collections.ConfigDict


def _parse(key: str, text: str, current: Any) -> Any:
  """Parses command-line ``text`` as the type of the field's value."""
  kind = type(current)
  try:
    if current is None:
      try:
        return ast.literal_eval(text)
      except (ValueError, SyntaxError):
        return text
    if isinstance(current, bool):
      if text.lower() not in ("true", "false"):
        raise ValueError
      return text.lower() == "true"
    if isinstance(current, (int, float, str)):
      return kind(text)
    if isinstance(current, (tuple, list)):
      try:
        value = ast.literal_eval(text)
      except (ValueError, SyntaxError):  # bare words: a,b,c
        element = type(current[0]) if current else str
        value = [element(word.strip()) for word in text.split(",")
                 if word.strip()]
      if not isinstance(value, (tuple, list)):
        value = [value]  # a single element: "fig3" or "0.5"
      return kind(value)
  except (ValueError, SyntaxError):
    raise ValueError(f"Config key {key!r}: cannot parse {text!r} as "
                     f"{kind.__name__} (the type of its current value "
                     f"{current!r}).") from None
  raise ValueError(f"Config key {key!r} holds a {kind.__name__}, which cannot "
                   "be set from a string.")


def _coerce(key: str, value: Any, current: Any) -> Any:
  """Checks a Python ``value`` fits the field's type (ints widen to float)."""
  if current is None or value is None:
    return value
  if isinstance(current, bool) or isinstance(value, bool):
    ok = isinstance(current, bool) and isinstance(value, bool)
  elif isinstance(current, float):
    ok = isinstance(value, (int, float))
    value = float(value) if ok else value
  elif isinstance(current, (tuple, list)):
    ok = isinstance(value, (tuple, list))
    value = type(current)(value) if ok else value
  else:
    ok = isinstance(value, type(current))
  if not ok:
    raise ValueError(f"Config key {key!r} expects {type(current).__name__} "
                     f"(its current value is {current!r}), got "
                     f"{type(value).__name__} {value!r}.")
  return value


def check_count(config: ConfigDict, key: str, low: int = 1) -> int:
  """``config[key]`` (a dotted key), which must be an integer >= ``low``:
  counts (seeds, repeats) that a plan loops over."""
  value = config
  for part in key.split("."):
    value = value[part]
  if isinstance(value, bool) or not isinstance(value, int) or value < low:
    raise UserError(f"config.{key} must be an integer >= {low}, got "
                    f"{value!r}.")
  return value


def check_nonempty(config: ConfigDict, key: str) -> list:
  """``config[key]`` (a dotted key), a list a plan loops over: empty, the
  plan would silently leave its part out."""
  value = config
  for part in key.split("."):
    value = value[part]
  if not isinstance(value, (list, tuple)) or not value:
    raise UserError(f"config.{key} must be a non-empty list, got {value!r}.")
  return list(value)


def valid_keys(config: ConfigDict, prefix: str = "") -> list[str]:
  """Every settable leaf key, dotted (``model.depth``)."""
  keys = []
  for name, value in config.items():
    if isinstance(value, ConfigDict):
      keys += valid_keys(value, f"{prefix}{name}.")
    else:
      keys.append(f"{prefix}{name}")
  return keys


def _set(config: ConfigDict, key: str, value: Any, *, parse: bool) -> None:
  """Sets the existing leaf ``key`` of ``config`` in place; in a model
  config (``{"name": <a model>, ...}``) also a field of that model it leaves
  at its default (``model.conv_grad``)."""
  path = key[len("config."):] if key.startswith("config.") else key
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node.get(part) if isinstance(node, ConfigDict) else None
  if isinstance(node, ConfigDict) and leaf not in node:
    default = models.field_defaults(node.get("name")).get(leaf)
    if default is not None:
      with node.unlocked():
        node[leaf] = list(default) if isinstance(default, tuple) else default
  if not isinstance(node, ConfigDict) or leaf not in node or isinstance(
      node[leaf], ConfigDict):
    keys = valid_keys(config)
    close = difflib.get_close_matches(path, keys, n=3)
    hint = f" Did you mean {close}?" if close else ""
    raise ValueError(f"Unknown config key {key!r}.{hint} Valid keys: "
                     f"{keys}.")
  current = node[leaf]
  node[leaf] = (_parse(key, value, current) if parse
                else _coerce(key, value, current))


def apply_overrides(config: ConfigDict, overrides: Sequence[str]) -> ConfigDict:
  """A copy of ``config`` with ``["key=value", ...]`` applied, parsed to the
  types of the existing fields."""
  config = config.copy_and_resolve_references()
  for item in overrides:
    key, sep, text = item.partition("=")
    if not sep:
      raise ValueError(f"Override {item!r} is not of the form key=value.")
    _set(config, key.strip(), text, parse=True)
  return config


def check_study(c, valid_parts, part_lists) -> list[str]:
  """A study config's ``parts`` (non-empty, each in ``valid_parts``), the
  lists each selected part loops over (``part_lists[part]``: keys, each a
  non-empty list) and its ``num_seeds``/``seed``; returns the parts."""
  unknown = sorted(set(c.parts) - set(valid_parts))
  if unknown:
    raise ValueError(f"config.parts has unknown parts {unknown}; valid: "
                     f"{tuple(valid_parts)}.")
  check_count(c, "num_seeds")
  check_count(c, "seed", low=0)
  parts = check_nonempty(c, "parts")
  for part in parts:
    for key in part_lists[part]:
      check_nonempty(c, key)
  return parts


def parse_arg(arg: str | None, **defaults) -> ConfigDict:
  """Reads ``get_config``'s ``arg`` string, typed like ``defaults``.

  ``arg`` is a comma-separated list of ``key=value`` (parsed to the type of
  ``defaults[key]``), ``flag`` (a boolean default set to True) and at most
  one bare ``value`` for the first default's key (the variant):
  ``NAME.py:fig3,quick`` sets ``part="fig3"`` and ``quick=True`` for
  ``parse_arg(arg, part="all", quick=False)``. Unknown keys and unparsable
  values are errors naming them.
  """
  result = ConfigDict(dict(defaults))
  seen = set()
  for token in (t for t in (arg or "").split(",") if t):
    key, sep, text = token.partition("=")
    if not sep and isinstance(defaults.get(token), bool):
      text = "true"
    elif not sep:  # the bare variant value
      key, text = next(iter(defaults), None), token
    if key not in defaults:
      raise ValueError(f"Unknown config argument {token!r} in {arg!r}; valid "
                       f"arguments: {list(defaults)}.")
    if key in seen:
      raise ValueError(f"Config argument {key!r} is set twice in {arg!r}.")
    seen.add(key)
    result[key] = _parse(key, text, defaults[key])
  return result


class Hyper:
  """Builds ``get_hyper``'s sweep: each method returns a list of override
  dicts (``[{"config.lr": 0.1}, ...]``)."""

  @staticmethod
  def sweep(key: str, values: Sequence) -> list[dict]:
    """One override per value of ``key``."""
    return [{key: v} for v in values]

  @staticmethod
  def product(sweeps: Sequence[list[dict]]) -> list[dict]:
    """Every combination, the first sweep varying slowest."""
    points = [{}]
    for sweep in sweeps:
      points = [_merge(a, b) for a in points for b in sweep]
    return points

  @staticmethod
  def zipit(sweeps: Sequence[list[dict]]) -> list[dict]:
    """The i-th points of equally long sweeps, merged."""
    lengths = [len(s) for s in sweeps]
    if len(set(lengths)) > 1:
      raise ValueError(f"zipit needs sweeps of equal length, got {lengths}.")
    points = []
    for parts in zip(*sweeps):
      point = {}
      for part in parts:
        point = _merge(point, part)
      points.append(point)
    return points


def _merge(a: Mapping, b: Mapping) -> dict:
  twice = sorted(a.keys() & b.keys())
  if twice:
    raise ValueError(f"Sweep sets keys {twice} twice in one point.")
  return {**a, **b}


def _split(path_with_arg: str) -> tuple[str, str | None]:
  match = re.fullmatch(r"(.*?\.py)(?::(.*))?", path_with_arg)
  if not match:
    raise ValueError(f"Config {path_with_arg!r} must be a path to a .py file, "
                     "optionally followed by :arg.")
  return match.group(1), match.group(2)


def _load(path_with_arg: str):
  """Imports the config file; returns ``(module, get_config(arg))``."""
  path, arg = _split(path_with_arg)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No config file {path!r}.")
  name = "ntdh_config_" + re.sub(r"\W", "_", os.path.basename(path)[:-3])
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ValueError(f"Config file {path!r} defines no get_config(arg).")
  config = module.get_config() if arg is None else module.get_config(arg)
  return module, (config if isinstance(config, ConfigDict)
                  else ConfigDict(config))


def load_config(path_with_arg: str) -> ConfigDict:
  """``get_config(arg)`` of ``path.py[:arg]``."""
  return _load(path_with_arg)[1]


def hyper_overrides(module) -> list[dict]:
  """``module.get_hyper(Hyper())``, or one empty override without one."""
  if not hasattr(module, "get_hyper"):
    return [{}]
  return list(module.get_hyper(Hyper()))


def expand(config: ConfigDict, module) -> list[ConfigDict]:
  """One config per ``get_hyper`` point (just ``[config]`` without one)."""
  configs = []
  for overrides in hyper_overrides(module):
    point = config.copy_and_resolve_references()
    for key, value in overrides.items():
      _set(point, key, value, parse=False)
    configs.append(point)
  return configs


def load_sweep(path_with_arg: str, overrides: Sequence[str] = ()):
  """What the command line runs: ``(base, configs, fingerprint)``.

  ``base`` is ``get_config(arg)`` with ``overrides`` (``key=value``) applied,
  ``configs`` its ``get_hyper`` expansion (hyper values win over overrides of
  the same key), ``fingerprint`` a JSON-able record of both used to refuse
  relaunching another config into the same workdir.
  """
  module, base = _load(path_with_arg)
  base = apply_overrides(base, overrides)
  configs = expand(base, module)
  fingerprint = {"config": base.to_dict(),
                 "hyper": {str(i): o
                           for i, o in enumerate(hyper_overrides(module))}}
  return base, configs, fingerprint


def prepared_scale(arg: str | None, dataset: str) -> tuple[str, dict]:
  """A prepared-dataset study's ``get_config`` argument,
  ``[quick|tiny][,data_dir=DIR][,config=NAME]``, as ``(scale, data)``: the
  scale ``"tiny"``, ``"quick"`` or ``"full"``, and the normalised data
  config of ``dataset``."""
  from ntdh_jax import data as data_lib  # the data registry imports jax
  a = parse_arg(arg, quick=False, tiny=False, data_dir="", config="")
  data = data_lib.normalise({"name": dataset, "data_dir": a.data_dir or None,
                             "config": a.config or None})
  return ("tiny" if a.tiny else "quick" if a.quick else "full"), data
