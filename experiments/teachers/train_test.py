"""Teacher training end to end, tiny: a small checkerboard flow MLP and the digits classifier,
a few steps each, with their cards, weights and exports."""

import json
import math

from experiments.teachers import train
from experiments.teachers.configs import checkerboard_flow, digits_classifier
from jaxsample import teachers


def test_checkerboard_teacher_card_weights_and_export(tmp_path):
    c = checkerboard_flow.get_config()
    c.net.features, c.net.time_embed_dim = (16, 16), 8
    c.num_steps, c.batch_size, c.warmup_steps, c.log_every = 3, 64, 0, 1
    c.eval.num_samples, c.eval.rtol, c.eval.atol = 64, 1e-3, 1e-3
    c.export_dir = str(tmp_path / "export")
    card = train.train_and_evaluate(c, str(tmp_path / "work"))
    assert json.loads(json.dumps(card)) == json.load(open(tmp_path / "work" / "checkerboard_flow.json"))
    assert card["steps"] == 3 and math.isfinite(card["final_loss"]) and card["command"].startswith("python ")
    assert card["path"] == "RectifiedFlow" and card["prediction"] == "velocity"
    ev = card["eval"]
    assert ev["num_samples"] == 64 and ev["sliced_wasserstein"] > ev["real_sliced_wasserstein"] > 0
    for name in ("checkerboard_flow.msgpack", "checkerboard_flow.json", "checkerboard_flow_samples.png"):
        assert (tmp_path / "export" / name).is_file(), name
    # The exported card loads as a teacher, with the trained network's size.
    model = teachers.load_teacher_from_card(tmp_path / "export" / "checkerboard_flow.json")
    assert type(model.path).__name__ == "RectifiedFlow" and card["num_params"] < 2000


def test_digits_classifier_card(tmp_path):
    c = digits_classifier.get_config()
    c.net.channels, c.num_steps, c.batch_size, c.log_every = 8, 3, 32, 1
    card = train.train_and_evaluate(c, str(tmp_path))
    assert card["module"] == "DigitsClassifier" and card["steps"] == 3
    assert card["eval"]["num_test"] == 300 and 0.0 <= card["test_accuracy"] == card["eval"]["test_accuracy"] <= 1.0
