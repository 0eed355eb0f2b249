"""Recognition and distillation training through the engine on a small slice of the demo data: a
RecModel trained with CELoss + TripletAngularMarginLoss on a PKSampler and evaluated by retrieval
(gallery / query), its eval reproduced from the checkpoint; a DistillationModel whose student is
saved alone and loads with create_model; and the bad-input errors (keys and files named)."""
import copy
import os

import numpy as np
import pytest

import ppbackbone
from ppbackbone.config import ConfigError, load_config
from ppbackbone.data import ensure_demo_dataset
from ppbackbone.data.dataset import DatasetError
from ppbackbone.data.samplers import SamplerError
from ppbackbone.engine import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RETRIEVAL = os.path.join(ROOT, "configs", "recognition", "quickstart_retrieval.yaml")
SIZE = 32
SMALL_ARCH = {"name": "RecModel", "Backbone": {"name": "pplcnet_x0_25", "class_expand": 32},
              "BackboneStopLayer": {"name": "flatten"}, "Neck": {"name": "BNNeck", "num_features": 32},
              "Head": {"name": "FC", "embedding_size": 32, "class_num": 4, "bias_attr": False}}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Label files: train on classes 0-3 (6 images each), gallery/query from classes 6-7."""
    root = ensure_demo_dataset(str(tmp_path_factory.mktemp("demo") / "shapes"))
    out = tmp_path_factory.mktemp("lists")
    names = sorted(os.listdir(os.path.join(root, "train")))
    from ppbackbone.data.demo import DEMO_CLASSES
    rows = {"train": [f"train/{DEMO_CLASSES[c]}/{i:04d}.jpg {c}" for c in range(4) for i in range(6)],
            "gallery": [f"train/{DEMO_CLASSES[c]}/{i:04d}.jpg {c}" for c in (6, 7) for i in range(5)],
            "query": [f"val/{DEMO_CLASSES[c]}/{i:04d}.jpg {c}" for c in (6, 7) for i in range(3)]}
    files = {}
    for split, lines in rows.items():
        files[split] = str(out / f"{split}.txt")
        with open(files[split], "w") as f:
            f.write("\n".join(lines) + "\n")
    assert len(names) == 10
    return root, files


def _shrink(ds, root, label_file):
    ds.pop("split", None)
    ds.update(name="ImageNetDataset", image_root=root, cls_label_path=label_file)
    for op in ds["transform_ops"]:
        name, params = next(iter(op.items()))
        if name in ("RandCropImage", "ResizeImage"):
            params["size"] = SIZE


def retrieval_config(data, out, **over):
    root, files = data
    cfg = load_config(RETRIEVAL, [f"Global.output_dir={out}", "Global.epochs=1", "Global.print_batch_step=1",
                                  f"Global.image_shape=[3,{SIZE},{SIZE}]",
                                  "DataLoader.Train.sampler.batch_size=8", "DataLoader.Train.sampler.sample_per_id=2"])
    cfg["Arch"] = copy.deepcopy(SMALL_ARCH)
    cfg["DataLoader"]["Train"]["loader"]["num_workers"] = 0
    _shrink(cfg["DataLoader"]["Train"]["dataset"], root, files["train"])
    for part in ("Gallery", "Query"):
        section = cfg["DataLoader"]["Eval"][part]
        section["loader"]["num_workers"] = 0
        section["dataset"] = copy.deepcopy(section["dataset"])
        _shrink(section["dataset"], root, files[part.lower()])
    for key, value in over.items():
        node = cfg
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return cfg


@pytest.mark.timeout(300)
def test_recmodel_trains_and_retrieval_eval_reproduces(data, tmp_path):
    cfg = retrieval_config(data, str(tmp_path))
    trainer = Trainer(cfg)
    result = trainer.train()
    last = result["last_eval"]
    assert sorted(last) == ["mAP", "recall1", "recall5"] and 0 <= last["recall1"] <= last["recall5"] <= 1
    assert 0 < last["mAP"] <= 1
    names = [h for h in trainer.history]
    assert len(names) == 3 and all(np.isfinite(h["loss"]) for h in names)  # 24 images / batch 8
    ckpt = os.path.join(str(tmp_path), "RecModel", "latest")
    evaluator = Trainer(dict(cfg, Global=dict(cfg["Global"], pretrained_model=ckpt)), mode="eval")
    again = evaluator.evaluate()
    for key, value in last.items():
        assert again[key] == pytest.approx(value, abs=1e-6)
    # a checkpoint key layout that a PaddleClas RecModel also has
    assert any(k.startswith("neck.feat_bn.") for k in trainer.model.state_dict())
    # embedding export: the graph returns `features`, inference.yml says NormalizeFeatures, and the
    # Predictor's vectors are the dygraph model's features, L2-normalised
    from ppbackbone.deploy.export import export_model
    from ppbackbone.deploy.predictor import Predictor
    result = export_model(cfg, save_dir=str(tmp_path / "inference"), weights=ckpt, latency_runs=0, log=lambda m: None)
    assert result.inference_config["PostProcess"] == {"NormalizeFeatures": None}
    assert result.inference_config["Model"]["mode"] == "embedding"
    predictor = Predictor(str(tmp_path / "inference"))
    root, files = data
    image_path = os.path.join(root, open(files["query"]).readline().split()[0])
    vector = predictor.predict(image_path)[0]["features"]
    assert vector.shape == (32,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    import paddle
    x = paddle.to_tensor(predictor.preprocess(image_path)[None])
    evaluator.model.eval()
    expected = evaluator.model(x)["features"].numpy()[0]
    np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-4)


def test_retrieval_bad_input_names_key_or_file(data, tmp_path):
    cfg = retrieval_config(data, str(tmp_path))
    missing = copy.deepcopy(cfg)
    missing["DataLoader"]["Eval"]["Gallery"]["dataset"]["cls_label_path"] = str(tmp_path / "nope.txt")
    with pytest.raises(DatasetError, match=r"DataLoader\.Eval\.Gallery\.dataset.*nope\.txt"):
        Trainer(missing)
    no_gallery = copy.deepcopy(cfg)
    del no_gallery["DataLoader"]["Eval"]["Gallery"]
    with pytest.raises(ConfigError, match=r"DataLoader\.Eval\.Gallery"):
        Trainer(no_gallery)
    bad_pk = copy.deepcopy(cfg)
    bad_pk["DataLoader"]["Train"]["sampler"]["batch_size"] = 7
    with pytest.raises(SamplerError, match=r"DataLoader\.Train\.sampler: batch_size 7 is not divisible by "
                                           r"sample_per_id 2"):
        Trainer(bad_pk)
    headless = copy.deepcopy(cfg)
    del headless["Arch"]["Head"]
    with pytest.raises(ConfigError, match=r"Loss\.Train: CELoss needs logits.*Arch\.Head"):
        Trainer(headless)
    plain = copy.deepcopy(cfg)
    plain["Arch"] = {"name": "pplcnet_x0_25", "class_num": 4}
    with pytest.raises(ConfigError, match=r"TripletAngularMarginLoss needs embeddings.*RecModel"):
        Trainer(plain)
    wrong_metric = copy.deepcopy(cfg)
    wrong_metric["Metric"]["Eval"] = [{"TopkAcc": {"topk": [1]}}]
    with pytest.raises(ConfigError, match=r"Metric\.Eval: TopkAcc is a classification metric"):
        Trainer(wrong_metric)


def distillation_config(data, out, teacher_path, **arch):
    root, files = data
    quick = os.path.join(ROOT, "configs", "quickstart.yaml")
    cfg = load_config(quick, [f"Global.output_dir={out}", "Global.epochs=1", "Global.print_batch_step=1",
                              f"Global.image_shape=[3,{SIZE},{SIZE}]",
                              "DataLoader.Train.sampler.batch_size=8", "DataLoader.Train.loader.num_workers=0",
                              "DataLoader.Eval.loader.num_workers=0"])
    cfg["Arch"] = {"name": "DistillationModel", "freeze_params_list": [True, False],
                   "models": [{"Teacher": {"name": "pplcnet_x0_25", "class_num": 4, "pretrained": teacher_path}},
                              {"Student": {"name": "pplcnet_x0_25", "class_num": 4, "scale": 0.25}}], **arch}
    cfg["Loss"] = {"Train": [{"DistillationGTCELoss": {"weight": 1.0, "model_names": ["Student"]}},
                             {"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"]]}}]}
    cfg.pop("Metric")
    for mode, split in (("Train", "train"), ("Eval", "train")):
        _shrink(cfg["DataLoader"][mode]["dataset"], root, files[split])
        for op in cfg["DataLoader"][mode]["dataset"]["transform_ops"]:
            name, params = next(iter(op.items()))
            if name == "ResizeImage":
                params.pop("size"), params.update(resize_short=SIZE)
            if name == "CropImage":
                params["size"] = SIZE
    return cfg


@pytest.mark.timeout(300)
def test_distillation_trains_student_saved_alone(data, tmp_path):
    teacher = ppbackbone.create_model("pplcnet_x0_25", num_classes=4)
    teacher_path = ppbackbone.save_weights(teacher, str(tmp_path / "teacher.pdparams")) \
        if hasattr(ppbackbone, "save_weights") else None
    if teacher_path is None:
        from ppbackbone.weights.io import save_weights
        teacher_path = save_weights(teacher, str(tmp_path / "teacher.pdparams"))
    cfg = distillation_config(data, str(tmp_path), teacher_path)
    trainer = Trainer(cfg)
    before = {k: v.numpy().copy() for k, v in trainer.model.Teacher.state_dict().items()}
    result = trainer.train()
    assert sorted(result["last_eval"]) == ["loss", "top1", "top5"]
    assert set(trainer.history[0]) >= {"loss"}
    for k, v in trainer.model.Teacher.state_dict().items():  # frozen: weights and BN statistics unchanged
        np.testing.assert_array_equal(v.numpy(), before[k])
    student_file = os.path.join(str(tmp_path), "DistillationModel", "latest.Student.pdparams")
    student = ppbackbone.create_model("pplcnet_x0_25", num_classes=4, pretrained=student_file)
    np.testing.assert_array_equal(student.state_dict()["fc.weight"].numpy(),
                                  trainer.model.Student.state_dict()["fc.weight"].numpy())
    # the exporter exports the student alone, from the student's file or from the whole checkpoint
    from ppbackbone.deploy.export import export_model
    for weights in (student_file, os.path.join(str(tmp_path), "DistillationModel", "latest")):
        result = export_model(cfg, save_dir=str(tmp_path / "inference"), weights=weights, latency_runs=0,
                              log=lambda m: None)
        assert result.inference_config["Model"]["name"] == "pplcnet_x0_25"
        assert result.inference_config["Model"]["class_num"] == 4
    # teacher weights of another model: the error names the key and the file
    other = ppbackbone.create_model("hgnetv2_b0", num_classes=4)
    from ppbackbone.weights.io import save_weights
    wrong = save_weights(other, str(tmp_path / "wrong.pdparams"))
    with pytest.raises(ConfigError, match=r"Arch.models\[0\]\.Teacher\.pretrained=.*wrong\.pdparams"):
        Trainer(distillation_config(data, str(tmp_path / "w"), wrong))
    bad_loss = distillation_config(data, str(tmp_path / "b"), teacher_path)
    bad_loss["Loss"]["Train"] = [{"CELoss": {"weight": 1.0}}]
    with pytest.raises(ConfigError, match=r"Loss\.Train: CELoss reads one model's output.*DistillationGTCELoss"):
        Trainer(bad_loss)
