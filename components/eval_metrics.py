"""The paper's evaluation metrics (section 4.1) as TFMA metrics, computed by `mbt_keras.metrics`.

TFMA's own `AUCPrecisionRecall` integrates a thresholded PR curve with Davis-Goadrich
interpolation, which on small eval sets differs from the average precision AudioSet results
are reported in; these metrics gather the eval set's labels and scores and call the project's
NumPy functions, so the Evaluator's mAP is the trainer's mAP. Keras metric objects cannot be
used (TFMA 0.47 loads tf_keras, the models are Keras 3).
"""
import functools
import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util

from mbt_keras import metrics as mbt_metrics

MEAN_AVERAGE_PRECISION = "mean_average_precision"
AVERAGE_PRECISION = "average_precision"   # per class, sub_key class_id
TOP_1 = "top_1_accuracy"
TOP_5 = "top_5_accuracy"
VERB_TOP_1 = "verb_top_1_accuracy"
NOUN_TOP_1 = "noun_top_1_accuracy"
ACTION_TOP_1 = "action_top_1_accuracy"


class MeanAveragePrecision(metric_types.Metric):
    """mAP over classes with a positive (mbt_keras.metrics), plus AP per class (sub_key class_id)."""

    def __init__(self, name: str = MEAN_AVERAGE_PRECISION):
        super().__init__(metric_util.merge_per_key_computations(_mean_average_precision),
                         name=name)


class TopKAccuracy(metric_types.Metric):
    """Top-k accuracy over the classes [offset, offset + num_classes) (all when num_classes=0)."""

    def __init__(self, name: str = TOP_1, k: int = 1, offset: int = 0, num_classes: int = 0):
        super().__init__(metric_util.merge_per_key_computations(_top_k_accuracy),
                         name=name, k=k, offset=offset, num_classes=num_classes)


class ActionAccuracy(metric_types.Metric):
    """Epic-Kitchens action accuracy: both the verb and the noun are the top-1 class."""

    def __init__(self, name: str = ACTION_TOP_1, num_verbs: int = 1):
        super().__init__(metric_util.merge_per_key_computations(_action_accuracy),
                         name=name, num_verbs=num_verbs)


for _metric in (MeanAveragePrecision, TopKAccuracy, ActionAccuracy):
    metric_types.register_metric(_metric)


def _mean_average_precision(name, eval_config=None, model_name="", output_name="",
                            sub_key=None, example_weighted=False):
    return _gather(name, eval_config, model_name, output_name, sub_key, example_weighted,
                   _map_result)


def _top_k_accuracy(name, k, offset, num_classes, eval_config=None, model_name="",
                    output_name="", sub_key=None, example_weighted=False):
    return _gather(name, eval_config, model_name, output_name, sub_key, example_weighted,
                   functools.partial(_top_k_result, k=k, offset=offset, num_classes=num_classes))


def _action_accuracy(name, num_verbs, eval_config=None, model_name="", output_name="",
                     sub_key=None, example_weighted=False):
    return _gather(name, eval_config, model_name, output_name, sub_key, example_weighted,
                   functools.partial(_action_result, num_verbs=num_verbs))


def _map_result(key, labels, scores):
    m_ap, per_class, _ = mbt_metrics.mean_average_precision(labels, scores)
    result = {key: m_ap}
    for class_id, ap in enumerate(per_class):
        result[key._replace(name=AVERAGE_PRECISION,
                            sub_key=metric_types.SubKey(class_id=class_id))] = float(ap)
    return result


def _top_k_result(key, labels, scores, *, k, offset, num_classes):
    end = offset + num_classes if num_classes else scores.shape[1]
    return {key: mbt_metrics.top_k_accuracy(labels[:, offset:end], scores[:, offset:end], k)}


def _action_result(key, labels, scores, *, num_verbs):
    def correct(part):
        return labels[:, part].argmax(axis=1) == scores[:, part].argmax(axis=1)
    verbs, nouns = slice(0, num_verbs), slice(num_verbs, scores.shape[1])
    return {key: float(np.mean(correct(verbs) & correct(nouns)))}


def _gather(name, eval_config, model_name, output_name, sub_key, example_weighted, result_fn):
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=None, combiner=_GatherCombiner(key, eval_config, result_fn))]


class _GatherCombiner(beam.CombineFn):
    """Collects every example's dense labels and scores; AP is not decomposable over batches."""

    def __init__(self, key, eval_config, result_fn):
        self._key = key
        self._eval_config = eval_config
        self._result_fn = result_fn

    def create_accumulator(self):
        return [[], []]

    def add_input(self, accumulator, element):
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, flatten=False, squeeze=False,
                example_weighted=False):
            accumulator[0].append(np.asarray(label, np.float32).reshape(-1))
            accumulator[1].append(np.asarray(prediction, np.float32).reshape(-1))
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for labels, scores in accumulators:
            merged[0].extend(labels)
            merged[1].extend(scores)
        return merged

    def extract_output(self, accumulator):
        if not accumulator[0]:
            return {self._key: float("nan")}
        return self._result_fn(self._key, np.stack(accumulator[0]), np.stack(accumulator[1]))
