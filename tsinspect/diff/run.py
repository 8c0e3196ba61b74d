"""``diff_archives``: open two archives, tell which is traced, align them (or diff their structure)."""

from __future__ import annotations

from dataclasses import dataclass

from tsinspect.archive.madeby import SCRIPTED, TRACED, UNKNOWN, MadeBy, made_by
from tsinspect.archive.problems import ArchiveError
from tsinspect.archive.reader import open_archive
from tsinspect.archive.summary import ArchiveSummary, summarize
from tsinspect.archive.text import printable
from tsinspect.diff.align import Aligner
from tsinspect.diff.astread import read_program
from tsinspect.diff.kinds import same_model
from tsinspect.diff.model import DiffResult
from tsinspect.diff.program import Program


class NotSameModel(ArchiveError):
    """The two archives are not variants of one model."""


@dataclass
class Side:
    path: str
    summary: ArchiveSummary
    program: Program
    made_by: MadeBy  # with the debug info's signals

    @property
    def kind(self) -> str:
        """What the diff takes the archive for: traced, scripted or unknown (a mixed one: its larger side)."""
        return self.made_by.leaning

    def kind_json(self) -> dict:
        return {"kind": self.kind, "evidence": list(self.made_by.evidence)}


def load_side(path: str) -> Side:
    with open_archive(path) as archive:
        if archive.format not in ("torchscript", "lite"):
            raise ArchiveError(f"{printable(path)} is a {archive.format} file, not a TorchScript archive; "
                               "diff compares TorchScript archives")
        summary = summarize(archive)
        program = read_program(archive, summary)
        made = made_by(summary.code, "traced_inputs.pkl" in archive.by_name, archive) \
            or MadeBy(UNKNOWN, "weak", ["no methods in code/ and no traced_inputs.pkl"])
    return Side(path, summary, program, made)


def diff_archives(path_a: str, path_b: str, ir: str = "auto", trust: bool = False, extract=None) -> DiffResult:
    """Diff two archives. ``ir``: "auto" (use the IR when both load), "never", or "always". ``extract``:
    how to get an archive's IR (``irread.extract_path`` by default; a cache in tests)."""
    from tsinspect.diff.export import export_diff, is_pt2

    pt2 = [p for p in (path_a, path_b) if is_pt2(p)]
    if len(pt2) == 1:  # TorchScript against the exported program (a sketch: diff/export.py)
        ts_path = path_b if pt2[0] == path_a else path_a
        return export_diff(ts_path, pt2[0], load_side(ts_path))
    a, b = load_side(path_a), load_side(path_b)
    kinds = {a.kind, b.kind}
    result = DiffResult("trace_vs_script", path_a, path_b,
                        kinds={path_a: a.kind_json(), path_b: b.kind_json()})
    if kinds == {TRACED, SCRIPTED} or kinds == {TRACED, UNKNOWN} or kinds == {SCRIPTED, UNKNOWN}:
        traced, scripted = (a, b) if a.kind == TRACED or b.kind == SCRIPTED else (b, a)
        if UNKNOWN in kinds:
            result.notes.append(f"{printable(traced.path if traced.kind == UNKNOWN else scripted.path)}: "
                                "kind not certain; taken as the other kind")
    else:
        from tsinspect.diff.structural import structural_diff

        result.mode = "structural"
        result.same_model, result.same_model_reason = same_model(a.program, b.program)
        result.findings = structural_diff(a, b)
        return result
    result.traced, result.scripted = traced.path, scripted.path
    result.same_model, result.same_model_reason = same_model(traced.program, scripted.program)
    if not result.same_model:
        raise NotSameModel(f"{printable(traced.path)} (traced) and {printable(scripted.path)} (scripted) are not "
                           f"variants of the same model: {result.same_model_reason}")
    t_prog, s_prog = traced.program, scripted.program
    result.analysis, result.analysis_note = "ast", "torch-free: code/ and debug info"
    if ir != "never":
        from tsinspect.diff.irread import programs_from_ir

        got, note = programs_from_ir(traced, scripted, trust, extract)
        if got is not None:
            t_prog, s_prog = got
            result.analysis = "ir"
        elif ir == "always":
            raise ArchiveError(f"the IR is not available: {note}")
        result.analysis_note = note
    aligner = Aligner(t_prog, s_prog)
    result.findings = sorted(aligner.run(), key=lambda f: f.rank())
    result.accepts = aligner.dynamic.signatures()
    if result.accepts_line():
        result.notes.append(result.accepts_line())
    return result
