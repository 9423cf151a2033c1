"""Between the dataset's contiguous labels (1..K) and the labels the model is trained on."""

import torch

from simpledet.config import Config
from simpledet.errors import UserError


def check_num_classes(cfg: Config, dataset) -> None:
    num = cfg.model.num_classes
    if cfg.data.contiguous_labels:
        if num != len(dataset.category_ids):
            found = len(dataset.category_ids)
            raise UserError(f"model.num_classes is {num} but {cfg.data.train.ann_file or 'the data'} has "
                            f"{found} categories; set model.num_classes={found}")
    elif min(dataset.category_ids) < 1:
        raise UserError(f"{cfg.data.train.ann_file or 'the data'}: category id {min(dataset.category_ids)} cannot be a "
                        "label: data.contiguous_labels=False uses category ids as labels, and labels start at 1 (0 is "
                        "the background); set data.contiguous_labels=True")
    elif max(dataset.category_ids) > num:
        raise UserError(f"model.num_classes is {num} but category ids go up to {max(dataset.category_ids)} "
                        "(data.contiguous_labels=False uses category ids as labels)")


def label_lookup(cfg: Config, dataset):
    """Maps dataset labels to model labels: identity, or label -> category id."""
    if cfg.data.contiguous_labels:
        return lambda labels: labels
    table = torch.zeros(len(dataset.category_ids) + 1, dtype=torch.int64)
    for label, cat in dataset.label_to_category_id.items():
        table[label] = cat
    return lambda labels: table[labels]


def model_label_to_category_id(cfg: Config, dataset) -> dict[int, int]:
    if cfg.data.contiguous_labels:
        return dict(dataset.label_to_category_id)
    return {cat: cat for cat in dataset.category_ids}
