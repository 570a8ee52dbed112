from pathlib import Path

from models.classifier.config import ClassifierConfig
from models.data.dataset import LabelledImages, stratified_split
from models.evaluation.decoding import DECODINGS
from models.evaluation.end_to_end import run_profile
from models.gan.config import GanTrainConfig
from models.gan.networks import GanArchitecture
from tests.toy_models import TREE, square_images


def test_a_profile_runs_end_to_end_and_resumes_its_gan(tmp_path: Path) -> None:
    images, labels = square_images(300, seed=2)
    data = LabelledImages("toy", images, labels, TREE, stratified_split(labels, 0.2, 0.2, 0))
    arch = GanArchitecture(latent_dim=8, g_width=8, d_width=8, d_extra_layers=1)
    gan = GanTrainConfig(architecture=arch, steps=4, batch_size=32, num_threads=1, progress=False)
    classifier = ClassifierConfig(
        epochs=2, batch_size=32, hidden=16, num_threads=1, feature_pool=2, tta_flip=True
    )
    run = run_profile(data, gan, classifier, tmp_path)
    assert set(run.test["decodings"]) == set(DECODINGS)
    assert 0.0 <= run.test["global_accuracy_fine"] <= 1.0 and run.test["test_images"] == 60
    assert set(run.calibration["methods"]) == set(TREE.level_names)
    assert run.classifier.info["gan"]["steps"] == 4 and run.classifier.config.tta_flip
    again = run_profile(data, gan, classifier, tmp_path, evaluate_test=False)
    assert again.classifier.info["gan"]["resumed_from"] == 4 and again.test == {}
