"""Class names of a config's dataset: PaddleClas's `Infer.PostProcess.class_id_map_file` (`<class id> <name>` a
line), or the embedded demo dataset's label list when the config reads the demo. The per-class report of an
evaluation and the exported inference.yml (PostProcess Topk label_list) both take them from here."""
import os

from .dataset import DatasetError

__all__ = ["label_file", "read_class_id_map", "class_name_list"]


def label_file(config):
    """(path, where it comes from) of the config's class-name file, or (None, None) when it names none:
    Infer.PostProcess.class_id_map_file, else the demo's label_list.txt when DataLoader.Eval (or Train) reads
    DemoDataset (written on first use)."""
    path = ((config.get("Infer") or {}).get("PostProcess") or {}).get("class_id_map_file")
    if path:
        return str(path), "Infer.PostProcess.class_id_map_file"
    loaders = config.get("DataLoader") or {}
    for mode in ("Eval", "Train"):
        dataset = (loaders.get(mode) or {}).get("dataset") or {}
        if dataset.get("name") == "DemoDataset":
            from .demo import ensure_demo_dataset
            root = ensure_demo_dataset(dataset.get("root"))
            return os.path.join(root, "label_list.txt"), f"the demo dataset's label list (DataLoader.{mode}.dataset)"
    return None, None


def read_class_id_map(path, where="class_id_map_file"):
    """{class id: name} from `<class id> <name>` lines (blank lines skipped; a line with an id alone names the
    class by its id). A missing or unreadable file or a malformed line is a DatasetError naming `where`, the file
    and the line."""
    if not os.path.isfile(path):
        kind = "is not a file" if os.path.exists(path) else "does not exist"
        raise DatasetError(f"{where}: {path} {kind}; fix the path or remove the key (it names the classes)")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{where}: cannot read {path} as UTF-8 text ({err})") from None
    names = {}
    for number, line in enumerate(lines, 1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        if not parts[0].isdigit():
            raise DatasetError(f"{where}: {path}:{number}: expected `<class id> <name>`, got {line.strip()!r}")
        names[int(parts[0])] = parts[1] if len(parts) > 1 else parts[0]
    return names


def class_name_list(config, class_num):
    """The names of classes 0..class_num-1 from the config's label file (ids it leaves out are named by their
    number); None when the config names no file. A file naming an id >= class_num (another dataset's) is a
    DatasetError."""
    path, where = label_file(config)
    if path is None:
        return None
    names = read_class_id_map(path, where)
    if class_num and max(names, default=-1) >= class_num:
        raise DatasetError(f"{where}: {path} names class id {max(names)} but the model has {class_num} classes "
                           f"(Arch.class_num); is it the label file of another dataset?")
    return [names.get(i, str(i)) for i in range(class_num or max(names, default=-1) + 1)]
