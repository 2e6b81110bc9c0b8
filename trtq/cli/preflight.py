"""What each command reads and writes, declared in one function per command and checked before any
work (trtq/paths.py): no output may be an input, a directory or anything but a regular file.

A command gets back a ``Checked`` and writes through it, which refuses a path nobody declared: an
output added to a command without its declaration here fails the first time it is written
(tests/test_outputs_guarded.py runs every output option of every command against every input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtq.cache.manifest import manifest_path, report_path
from trtq.config import LoadedConfig
from trtq.config.loader import build_report_path, engine_path
from trtq.data.from_config import calibration_entries_if_listed
from trtq.data.image_list import ImageEntry
from trtq.errors import TrtqError
from trtq.fileio import atomic_write_text, write_json
from trtq.fileset import replace_set
from trtq.paths import (
    Named,
    calibration_outputs,
    check_outputs,
    config_inputs,
    given_inputs,
    heldout_inputs,
    image_inputs,
    model_inputs,
)
from trtq.tune.outputs import tune_paths


@dataclass(frozen=True)
class Checked:
    """A run's outputs, checked against its inputs: the only paths the command writes."""

    outputs: tuple[Path, ...]

    def write_json(self, path: Path, value: Any) -> None:
        write_json(self._declared(path), value)

    def write_text(self, path: Path, text: str) -> None:
        atomic_write_text(self._declared(path), text)

    def write_set(self, files: Mapping[Path, bytes]) -> None:
        """Files that belong together, replaced as one set (trtq/fileset.py)."""
        replace_set({self._declared(path): data for path, data in files.items()})

    def _declared(self, path: Path) -> Path:
        if path not in self.outputs:
            raise AssertionError(f"{path}: written without being declared in trtq/cli/preflight.py")
        return path


def checked(outputs: Sequence[Named], inputs: Sequence[Named]) -> Checked:
    check_outputs(outputs, inputs)
    return Checked(tuple(path for _, path in outputs))


def _listed(config: LoadedConfig) -> list[Named]:
    """The config's files and, when its image list can be read, the list and every image on it: a
    command may read them for a staleness or overlap check, and must never write over them."""
    return config_inputs(config, calibration_entries_if_listed(config))


def json_option(path: Path) -> Named:
    return (f"--json {path}", path)


def calibrate(config: LoadedConfig, entries: Sequence[ImageEntry]) -> Checked:
    """The cache set; read are the config's files, its images and the images it scores algorithms on
    (calibration.eval_images or --images)."""
    inputs = config_inputs(config, entries, with_cache=False)
    scored = config.spec.calibration.eval_images
    if scored is not None:
        inputs += heldout_inputs(config.resolve(scored))
    return checked(calibration_outputs(config), inputs)


def build(configs: Sequence[LoadedConfig]) -> Checked:
    """Engines, build reports and timing caches. The config's cache set is an input here: an int8
    build reads it, or writes it as calibrate would (trtq/trt/feed.py, its owner), and no other
    output may land on it."""
    outputs: list[Named] = []
    inputs: list[Named] = []
    for config in configs:
        build = config.spec.build
        engine = engine_path(config)
        report = build_report_path(engine)
        outputs += [
            (f"the engine {engine} (build.engine in {config.source})", engine),
            (f"the build report {report} beside the engine", report),
        ]
        if build.timing_cache:
            timing = config.resolve(build.timing_cache)
            outputs.append((f"build.timing_cache {timing} (in {config.source})", timing))
        inputs += _listed(config)
    return checked(outputs, inputs)


def qdq_summary_path(output: Path) -> Path:
    return output.with_name(output.name + ".json")


def qdq(config: LoadedConfig, output: Path, cache: Path | None) -> Checked:
    summary = qdq_summary_path(output)
    return checked(
        [(f"--output {output}", output), (f"the summary {summary} written beside --output", summary)],
        [*given_inputs(cache=cache), *_listed(config)],
    )


def compare(
    config: LoadedConfig,
    images: Path,
    json_path: Path,
    labels: Path | None,
    cache: Path | None,
    engine: Path | None,
) -> Checked:
    return checked(
        [json_option(json_path)],
        [*heldout_inputs(images), *given_inputs(labels=labels, cache=cache, engine=engine), *_listed(config)],
    )


def sensitivity(config: LoadedConfig, images: Path, json_path: Path, cache: Path | None) -> Checked:
    return checked(
        [json_option(json_path)], [*heldout_inputs(images), *given_inputs(cache=cache), *_listed(config)]
    )


def doctor(json_path: Path | None, workdir: Path | None) -> Checked:
    """doctor reads nothing of the user's; its tiny model's files go to a folder of its own, so a
    given ``--workdir`` must be new or empty (its files would replace the user's)."""
    if workdir is not None and workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
        raise TrtqError(
            f"--workdir {workdir}: give a new or empty folder (doctor writes its tiny model there)"
        )
    return checked([json_option(json_path)] if json_path is not None else [], [])


def crosscheck(config: LoadedConfig, cache: Path, json_path: Path) -> Checked:
    return checked([json_option(json_path)], [*given_inputs(cache=cache), *_listed(config)])


def report(config: LoadedConfig, output: Path, given: Mapping[str, Path | None]) -> Checked:
    """``given``: the cache and the JSON files of other commands, by option name."""
    return checked([(f"--output {output}", output)], [*given_inputs(**given), *_listed(config)])


def bench(targets: Mapping[Path, LoadedConfig | None], json_path: Path) -> Checked:
    inputs: list[Named] = []
    for target, config in targets.items():
        inputs += model_inputs(f"the bench target {target}", target) if config is None else _listed(config)
    return checked([json_option(json_path)], inputs)


def tune(
    config: LoadedConfig,
    output: Path,
    tune_images: Path,
    entries: Sequence[ImageEntry],
    images: Path | None,
) -> Checked:
    """The tuned set (trtq/tune/outputs.py): Q/DQ and FP32 models, cache and manifest, config, tune.json."""
    paths = tune_paths(output)
    written = [*paths.all(), manifest_path(paths.cache)]
    return checked(
        [(f"-o {output}: writes {path.name}", path) for path in written],
        [
            (f"the tuning image list --tune-images {tune_images}", tune_images),
            *image_inputs(entries),
            *(heldout_inputs(images) if images is not None else []),
            *_listed(config),
        ],
    )


def retarget(cache: Path, output: Path | None) -> Checked:
    """In place, the cache and its manifest are rewritten (the command's purpose); to ``-o``, the
    new set must not land on the cache it reads."""
    if output is None or output.resolve() == cache.resolve():
        return Checked((cache, manifest_path(cache)))
    return checked(
        [
            (f"-o {output}", output),
            (f"the manifest {manifest_path(output)} written beside -o", manifest_path(output)),
            (f"the report written beside -o {output}", report_path(output)),
        ],
        [(f"CACHE {cache}", cache)],
    )
