"""Golden compiled pipelines: the comparison's normalisation, and ``make golden`` to regenerate them.

Like KFP's own compilation tests, what changes with the SDK release rather than with the pipeline
(``sdkVersion``) is normalised before comparing; a reviewer reads the diff of a regeneration.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"
#: The shipped pipelines kept as golden files: the HPO demo, the three comparison studies on the demo
#: studies and the NAS demo; the spleen and prostate ones (the HPO ones with 20 unrolled rounds, 8,900 lines each) are checked
#: by targeted assertions instead.
GOLDEN_PIPELINES = ("hpo-demo", "proxy-data-study-demo-studies", "proxy-net-study-demo-studies", "trust-demo-studies", "nas-demo")
#: Golden files of pipelines compiled for a shrunk example, where the shipped one unrolls too much to review:
#: name -> (kind, example, changes to its config). The automl comparison unrolls arms x rounds x repeats.
GOLDEN_VARIANTS = {
    "automl-comparison-small": (
        "automl-comparison",
        "demo-studies",
        {"search": {"rounds": 1}, "studies": {"comparison": {"arms": ["all-data", "proxy-data"], "repeats": 1}}},
    ),
}


def variant_study(name: str):
    """The shrunk example study a golden variant is compiled for."""
    from proxyhpo.config import StudyConfig
    from proxyhpo.catalogue import shipped_study

    _, example, changes = GOLDEN_VARIANTS[name]
    document = shipped_study(example).model_dump(mode="json")
    for section, values in changes.items():
        for key, value in values.items():
            if isinstance(value, dict):
                document[section][key].update(value)
            else:
                document[section][key] = value
    return StudyConfig.model_validate(document)


def normalize(text: str) -> str:
    """Strip what changes with the SDK release rather than with the pipeline."""
    return re.sub(r"sdkVersion: kfp-[\w.]+", "sdkVersion: kfp-<version>", text)


def regenerate(folder: Path = GOLDEN) -> list[Path]:
    """Compile the golden pipelines and write them, normalised, into ``folder``."""
    from proxyhpo.catalogue import SHIPPED_PIPELINES, shipped_study
    from proxyhpo.compile import compile_study

    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in GOLDEN_PIPELINES:
            kind, example = SHIPPED_PIPELINES[name]
            compiled = compile_study(shipped_study(example), Path(tmp) / f"{name}.yaml", kind)
            golden = folder / f"{name}.yaml"
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(normalize(compiled.read_text()))
            written.append(golden)
        for name, (kind, _, _) in GOLDEN_VARIANTS.items():
            compiled = compile_study(variant_study(name), Path(tmp) / f"{name}.yaml", kind)
            golden = folder / f"{name}.yaml"
            golden.write_text(normalize(compiled.read_text()))
            written.append(golden)
    return written


if __name__ == "__main__":
    for path in regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN):
        print(path)
