"""Metric-learning and distillation losses, retrieval and two-class metrics against PaddleClas develop.

tests/fixtures/metric_paddleclas.npz holds PaddleClas develop's own values and gradients on fixed
inputs (tests/fixtures/make_metric_fixture.py made it from a checkout; see its docstring).
"""
import os

import numpy as np
import paddle
import pytest

from ppbackbone.config import ConfigError
from ppbackbone.engine.losses import (CELoss, DistillationCELoss, DistillationDMLLoss, DistillationGTCELoss,
                               DistillationKLDivLoss, LossInputError, TripletAngularMarginLoss, TripletLoss,
                               TripletLossV2, build_loss)
from ppbackbone.engine.metrics import ClassPrecisionRecall, Recallk, TprAtFpr, build_metrics, mAP

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "fixtures", "metric_paddleclas.npz"))

TRIPLET_CASES = {
    "triplet": (lambda: TripletLoss(margin=1.0), "feat"),
    "tripletv2": (lambda: TripletLossV2(margin=0.5), "feat"),
    "tripletv2_raw": (lambda: TripletLossV2(margin=3.0, normalize_feature=False), "feat"),
    "taml": (lambda: TripletAngularMarginLoss(), "feat"),
    "taml_shitu": (lambda: TripletAngularMarginLoss(margin=0.5, add_absolute=True, absolute_loss_weight=0.1,
                                                    ap_value=0.8, an_value=0.4), "feat_single"),
    "taml_sum": (lambda: TripletAngularMarginLoss(reduction="sum"), "feat"),
}


@pytest.mark.parametrize("case", sorted(TRIPLET_CASES))
def test_triplet_losses_match_paddleclas_values_and_gradients(case):
    make, feat_key = TRIPLET_CASES[case]
    x = paddle.to_tensor(FIXTURE[feat_key], stop_gradient=False)
    loss = make()({"features": x}, paddle.to_tensor(FIXTURE["label"]))
    loss.backward()
    assert float(loss) == pytest.approx(float(FIXTURE[f"{case}/loss"]), rel=1e-5, abs=1e-7)
    np.testing.assert_allclose(x.grad.numpy(), FIXTURE[f"{case}/grad"], rtol=1e-4, atol=1e-7)
    assert case != "triplet" or float(loss) > 0  # a case that can fail


def test_angular_margin_negative_term_is_one_below_an_value():
    # one anchor per class pair, an orthogonal negative: s_an = 0 < an_value, so the term is ONE
    x = paddle.to_tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    label = paddle.to_tensor([0, 0, 1, 1])
    loss = TripletAngularMarginLoss(margin=0.5, add_absolute=True, absolute_loss_weight=0.1, ap_value=0.8,
                                    an_value=0.4)({"features": x}, label)
    # ranking relu(0 - 1 + 0.5) = 0; ap term 0; an term 1 -> 0.1 * (1 + 0)
    assert float(loss) == pytest.approx(0.1, abs=1e-6)


DISTILL_CASES = {
    "gtce": lambda: DistillationGTCELoss(model_names=["Student"]),
    "gtce_eps": lambda: DistillationGTCELoss(model_names=["Student"], epsilon=0.1),
    "ce": lambda: DistillationCELoss(model_name_pairs=[["Student", "Teacher"]]),
    "ce_eps": lambda: DistillationCELoss(model_name_pairs=[["Student", "Teacher"]], epsilon=0.1),
    "dml": lambda: DistillationDMLLoss(model_name_pairs=[["Student", "Teacher"]]),
    "dml_sum": lambda: DistillationDMLLoss(model_name_pairs=[["Student", "Teacher"]], sum_across_class_dim=True),
    "kl": lambda: DistillationKLDivLoss(model_name_pairs=[["Student", "Teacher"]]),
}


@pytest.mark.parametrize("case", sorted(DISTILL_CASES))
def test_distillation_losses_match_paddleclas(case):
    student = paddle.to_tensor(FIXTURE["student"], stop_gradient=False)
    values = DISTILL_CASES[case]()({"Student": student, "Teacher": paddle.to_tensor(FIXTURE["teacher"])},
                                   paddle.to_tensor(FIXTURE["label"].reshape(-1, 1)))
    expected = {k.split("/", 1)[1]: float(FIXTURE[k]) for k in FIXTURE.files
                if k.startswith(f"{case}/") and not k.endswith("/grad")}
    assert sorted(values) == sorted(expected)  # PaddleClas's key names
    for key, value in values.items():
        assert float(value) == pytest.approx(expected[key], rel=1e-5)
    sum(values.values()).backward()
    np.testing.assert_allclose(student.grad.numpy(), FIXTURE[f"{case}/grad"], rtol=1e-4, atol=1e-7)


def test_combined_loss_weights_triplet_with_ce():
    feat = paddle.to_tensor(FIXTURE["feat"])
    logits = paddle.to_tensor(FIXTURE["feat"][:, :4])
    label = paddle.to_tensor(FIXTURE["label"])
    combined = build_loss([{"CELoss": {"weight": 1.0, "epsilon": 0.1}},
                           {"TripletAngularMarginLoss": {"weight": 0.5, "margin": 0.5}}], "Loss.Train")
    out = combined({"features": feat, "logits": logits}, label)
    ce = float(CELoss(epsilon=0.1)(logits, label))
    tri = float(TripletAngularMarginLoss(margin=0.5)({"features": feat}, label))
    assert float(out["CELoss"]) == pytest.approx(ce) and float(out["TripletAngularMarginLoss"]) == pytest.approx(tri)
    assert float(out["loss"]) == pytest.approx(ce + 0.5 * tri, rel=1e-6)


def test_loss_errors_name_what_is_missing():
    label = paddle.to_tensor([0, 0, 1, 1])
    with pytest.raises(LossInputError, match="features.*RecModel"):
        TripletLossV2()(paddle.randn([4, 3]), label)
    with pytest.raises(LossInputError, match="single class"):
        TripletLoss()({"features": paddle.randn([4, 3])}, paddle.to_tensor([1, 1, 1, 1]))
    with pytest.raises(LossInputError, match="'Teacher'"):
        DistillationKLDivLoss(model_name_pairs=[["Student", "Teacher"]])({"Student": paddle.randn([4, 3])}, label)
    with pytest.raises(ConfigError, match="model_name_pairs"):
        build_loss([{"DistillationDMLLoss": {"model_name_pairs": ["Student", "Teacher"]}}], "Loss.Train")
    with pytest.raises(ConfigError, match="Loss.Train.*TripletLossV2.*unknown parameter.*marginn"):
        build_loss([{"TripletLossV2": {"marginn": 0.3}}], "Loss.Train")


def test_retrieval_metrics_match_paddleclas():
    args = (FIXTURE["sim"], FIXTURE["query_label"], FIXTURE["gallery_label"])
    recall = Recallk(topk=[1, 2, 5]).compute(*args)
    np.testing.assert_allclose([recall["recall1"], recall["recall2"], recall["recall5"]], FIXTURE["recall"],
                               rtol=1e-6)
    assert mAP().compute(*args)["mAP"] == pytest.approx(float(FIXTURE["map"]), rel=1e-6)
    with pytest.raises(ValueError, match="exceeds the 20 gallery"):
        Recallk(topk=[50]).compute(*args)


@pytest.mark.parametrize("max_fpr", [0.01, 0.1])
def test_tpr_at_fpr_matches_paddleclas(max_fpr):
    logits, label = FIXTURE["tpr_logits"], FIXTURE["tpr_label"]
    metric = TprAtFpr(max_fpr=max_fpr, thresholds=[0.5])
    for start in range(0, 300, 64):
        metric.update(paddle.to_tensor(logits[start:start + 64]), paddle.to_tensor(label[start:start + 64]))
    out = metric.accumulate()
    assert out["tpr"] == pytest.approx(float(FIXTURE[f"tpr{max_fpr}/max_tpr"]), abs=1e-12)
    assert metric.info() == str(FIXTURE[f"tpr{max_fpr}/info"])
    score = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
    pos = label[:, 0] == 1
    assert out["tpr@0.5"] == pytest.approx((score[pos] > 0.5).mean())
    assert out["fpr@0.5"] == pytest.approx((score[~pos] > 0.5).mean())
    # the summed state (what ranks all-reduce) gives the same best point
    other = TprAtFpr(max_fpr=max_fpr)
    other.load_state(metric.state())
    assert other.accumulate()["tpr"] == out["tpr"]
    with pytest.raises(ValueError, match="two-class"):
        metric.update(paddle.randn([2, 3]), paddle.to_tensor([0, 1]))


def test_class_precision_recall_report():
    metric = ClassPrecisionRecall()
    logits = paddle.to_tensor(np.eye(3, dtype="float32")[[0, 0, 1, 2, 2, 2]])
    metric.update(logits, paddle.to_tensor([0, 1, 1, 2, 2, 0]))
    precision, recall, support = metric.per_class()
    np.testing.assert_allclose(precision, [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(recall, [0.5, 0.5, 1.0])
    assert support.tolist() == [2, 2, 2]
    lines = metric.report(["cat", "dog", "bird"])
    assert lines[1].split()[:3] == ["cat", "0.5000", "0.5000"]


def test_metric_kinds_are_checked():
    with pytest.raises(ConfigError, match="Recallk is a retrieval metric.*classification"):
        build_metrics([{"Recallk": {"topk": [1]}}], "Metric.Eval")
    assert [type(m).__name__ for m in build_metrics(None, "Metric.Eval", kind="retrieval")] == ["Recallk", "mAP"]


def test_tpr_at_fpr_on_retrieval_pairs():
    from ppbackbone.engine.retrieval import retrieval_scores
    rng = np.random.RandomState(3)
    query, gallery = rng.randn(10, 4), rng.randn(30, 4)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    ql, gl = rng.randint(0, 3, 10), rng.randint(0, 3, 30)
    metric = TprAtFpr(max_fpr=0.2)
    out = retrieval_scores(query, ql, gallery, gl, [metric, Recallk(topk=[1])], block_size=4)
    sim = query @ gallery.T
    pos, neg = sim[ql[:, None] == gl[None]], sim[ql[:, None] != gl[None]]
    # the best grid threshold: the lowest one whose false-positive rate is <= 0.2
    grid = -1 + np.arange(10000) * 2.0 / 10000
    fprs = np.array([(neg > t).mean() for t in grid[::50]])
    t = grid[::50][np.argmax(fprs <= 0.2)]
    assert out["tpr"] >= (pos > t).mean() - 1e-12 and out["fpr"] <= 0.2
    assert out["tpr"] == pytest.approx((pos > out["threshold"]).mean())
    assert "recall1" in out
    assert [type(m).__name__ for m in build_metrics([{"TprAtFpr": {"max_fpr": 0.01}}], "Metric.Eval",
                                                    kind="retrieval")] == ["TprAtFpr"]


def test_per_class_report_names_classes(tmp_path):
    from ppbackbone.engine.evaluation import class_names
    demo = {"DataLoader": {"Eval": {"dataset": {"name": "DemoDataset", "root": str(tmp_path / "demo")}}}}
    names = class_names(demo, 10)
    assert names[0] == "circle" and len(names) == 10
    listed = tmp_path / "labels.txt"
    listed.write_text("0 cat\n1 dog\n")
    assert class_names({"Infer": {"PostProcess": {"class_id_map_file": str(listed)}}}, 2) == ["cat", "dog"]
    assert class_names({"Infer": {"PostProcess": {"class_id_map_file": str(listed)}}}, 3) == ["cat", "dog", "2"]
    assert class_names({"Infer": {"PostProcess": {"class_id_map_file": str(listed)}}}, 1) is None  # warned: id 1
    assert class_names({}, 3) is None
