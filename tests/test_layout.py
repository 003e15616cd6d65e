"""The learning code stays free of the search and tracking libraries."""

import subprocess
import sys


def test_trainers_import_neither_optuna_nor_mlflow():
    code = (
        "import sys\n"
        "import trainers.train, trainers.data, trainers.optimizers\n"
        "import trainers.energies, trainers.inference, trainers.model\n"
        "print(sorted(m for m in ('optuna', 'mlflow') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
