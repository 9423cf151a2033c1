"""Between the dataset's contiguous labels (1..K) and the labels the model is trained on."""

import torch

from simpledet.config import Config
from simpledet.errors import UserError


def check_num_classes(cfg: Config, dataset) -> None:
    num = cfg.model.num_classes
    source = getattr(dataset, "ann_file", None) or cfg.data.train.ann_file or "the data"
    if cfg.data.contiguous_labels:
        if num != len(dataset.category_ids):
            found = len(dataset.category_ids)
            raise UserError(f"model.num_classes is {num} but {source} has {found} categories; set "
                            f"model.num_classes={found} on the command line or in the config's model section")
    elif min(dataset.category_ids) < 1:
        raise UserError(f"{source}: category id {min(dataset.category_ids)} cannot be a "
                        "label: data.contiguous_labels=False uses category ids as labels, and labels start at 1 (0 is "
                        "the background); set data.contiguous_labels=True")
    elif max(dataset.category_ids) > num:
        raise UserError(f"model.num_classes is {num} but category ids go up to {max(dataset.category_ids)} "
                        "(data.contiguous_labels=False uses category ids as labels); set "
                        f"model.num_classes={max(dataset.category_ids)} on the command line or in the config")


def label_lookup(cfg: Config, dataset):
    """Maps dataset labels to model labels: identity, or label -> category id."""
    if cfg.data.contiguous_labels:
        return lambda labels: labels
    table = torch.zeros(len(dataset.category_ids) + 1, dtype=torch.int64)
    for label, cat in dataset.label_to_category_id.items():
        table[label] = cat
    return lambda labels: table[labels]


def model_label_to_category_id(cfg: Config, dataset, model_categories: list[str] | None = None) -> dict[int, int]:
    """Model label -> the dataset's category id. `model_categories`: the class names the model was
    trained on, in label order (a checkpoint's JSON records them). Given, an evaluation set that
    names the same classes in another order (a VOC root sorts its names, a YOLO data.yaml keeps its
    own order) is matched by name; one that lacks a class is refused."""
    if not cfg.data.contiguous_labels:
        return {cat: cat for cat in dataset.category_ids}
    if model_categories is None or list(model_categories) == list(dataset.category_names):
        return dict(dataset.label_to_category_id)
    id_of_name = dict(zip(dataset.category_names, dataset.category_ids))
    missing = [name for name in model_categories if name not in id_of_name]
    if missing or len(model_categories) != len(dataset.category_names):
        raise UserError(f"{dataset.ann_file}: its categories {list(dataset.category_names)} are not the "
                        f"{list(model_categories)} the model was trained on"
                        + (f" (missing: {missing})" if missing else ""))
    return {label: id_of_name[name] for label, name in enumerate(model_categories, start=1)}
