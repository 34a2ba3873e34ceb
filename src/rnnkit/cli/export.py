"""``rnnkit export RUN_DIR --format onnx|torchscript``: a trained run as files for inference.

Reads a run of ``rnnkit lm train``, ``classify train`` or ``forecast train`` (the task
is the checkpoint's ``meta["task"]``) and writes the sequence form, the step form and
a JSON sidecar (see :mod:`rnnkit.export`). The run itself is only read.
"""

from __future__ import annotations

import os
from pathlib import Path

from rnnkit.cli.errors import UsageError
from rnnkit.cli.runs import open_trained_run

FORM_CHOICES = ("sequence", "step", "both")


def add_export_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="a trained run as ONNX or TorchScript files",
        description=(
            "Export a trained language model, classifier or forecaster: the sequence form "
            "(whole sequences, free batch and time axes), the step form (one step and the "
            "state, for streaming) and a JSON sidecar describing inputs, outputs, state and "
            "the vocabulary or scaling to use."
        ),
    )
    p.add_argument("run_dir", help="a run directory of `rnnkit lm|classify|forecast train`")
    p.add_argument("--format", required=True, metavar="{onnx,torchscript}", help="file format")
    p.add_argument(
        "--output",
        help="file of the first form (default RUN_DIR/model.onnx or model.pt); the step form "
        "goes beside it as NAME_step.SUFFIX, the sidecar as FILE.json",
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="checkpoint to export (default best; last where the run kept no best)",
    )
    p.add_argument(
        "--form",
        metavar="{sequence,step,both}",
        help="forms to write (default: both, or sequence alone where there is no step form)",
    )
    p.set_defaults(run=export_command)


def export_command(args) -> int:
    from rnnkit.export import FORMATS, FORMS, export_model, has_step_form, output_paths
    from rnnkit.export.classifier import NO_STEP_FORM

    if args.format not in FORMATS:
        raise UsageError(f"unknown --format {args.format!r}; choose onnx or torchscript")
    if args.form is not None and args.form not in FORM_CHOICES:
        raise UsageError(f"unknown --form {args.form!r}; choose sequence, step or both")
    model, task, info, run_dir, checkpoint_dir = load_for_export(args.run_dir, args.checkpoint)
    if args.form is None:
        forms = FORMS if has_step_form(model) else ("sequence",)
    else:
        forms = FORMS if args.form == "both" else (args.form,)
    if "step" in forms and not has_step_form(model):
        raise UsageError(NO_STEP_FORM)
    paths = output_paths(args.format, run_dir, args.output, forms)
    check_writable(paths.values())
    add_run_files(info, run_dir, checkpoint_dir, paths["sidecar"].parent)
    result = export_model(model, args.format, paths, info)
    checkpoint = info["checkpoint"]
    print(f"exported {task} ({checkpoint['tag']} checkpoint, step {checkpoint['step']}):")
    for name in (*FORMS, "sidecar"):
        if name in result.files:
            label = "description" if name == "sidecar" else f"{name} form"
            print(f"  {label}: {result.files[name]}")
    if args.form is None and "step" not in forms:
        print("  (no step form: the classifier is bidirectional)")
    return 0


def load_for_export(run_dir: str | Path, tag: str):
    """The run's model (eval mode), task, facts for the sidecar, directory and checkpoint."""
    run = Path(run_dir)
    checkpoint, used = open_trained_run(run, tag, "rnnkit export")
    task = checkpoint.meta["task"]
    info = {"task": task, "checkpoint": {"tag": used, "step": checkpoint.step}}
    if task == "lm":
        from rnnkit.cli.lm import load_run

        model, vocab = load_run(run, used)
        info["vocab"] = vocab_info(vocab)
    elif task == "classify":
        from rnnkit.cli.classify import load_run

        model, meta, vocab = load_run(run, used)
        info["classes"] = meta["classes"]
        if vocab is not None:
            info["vocab"] = vocab_info(vocab)
    else:
        from rnnkit.cli.forecast import load_run

        model, meta = load_run(run, used)
        cfg = model.config
        info.update(
            columns=meta["columns"],
            targets=meta["columns"][: cfg.n_targets],
            scaler=meta["scaler"],
            scaling=(
                "inputs: (value - mean) / std per column; outputs: forecast * std + mean "
                "and forecast_var * std² with the targets' mean and std"
            ),
        )
    info["model"] = model.config.to_dict()
    return model, task, info, run, checkpoint.path


def vocab_info(vocab) -> dict:
    return {
        "kind": vocab.kind,
        "size": len(vocab),
        "ids": "token id = index in the file's tokens list; 0 is <unk>, for unseen tokens",
    }


def add_run_files(info: dict, run: Path, checkpoint_dir: Path, sidecar_dir: Path) -> None:
    """Add the run's files the sidecar refers to, as paths relative to the sidecar."""
    from rnnkit.export import relative

    info["run_dir"] = relative(run, sidecar_dir)
    info["checkpoint"]["dir"] = relative(checkpoint_dir, sidecar_dir)
    if "vocab" in info:
        info["vocab"]["file"] = relative(run / "vocab.json", sidecar_dir)
    if "scaler" in info:
        info["scaler_source"] = relative(checkpoint_dir / "config.json", sidecar_dir)


def check_writable(paths) -> None:
    """Refuse, before any work, an output that could not be written."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise UsageError(f"cannot write {path}: it is a directory; give a file path")
        parent = path.parent
        if not parent.is_dir():
            what = "is not a directory" if parent.exists() else "does not exist"
            raise UsageError(f"cannot write {path}: {parent} {what}")
        if not os.access(parent, os.W_OK):
            raise UsageError(f"cannot write {path}: {parent} is not writable")


__all__ = ["add_export_parser", "check_writable", "export_command", "load_for_export"]
