"""FLOPs from the TF graph: the paper's cost claims for bottleneck vs cross fusion (3.2.3)."""
import pytest
import tensorflow as tf

from mbt_keras.config import from_preset
from mbt_keras.flops import flops_by_fusion_layer, graph_flops, model_flops
from mbt_keras.model import build_model
from mbt_keras.reports import flops_table


@pytest.fixture(scope="module")
def b16_table():
    return flops_table(from_preset("mbt-b16"))


def test_einsum_and_matmul_are_counted_as_two_flops_per_multiply_add():
    a, b = tf.TensorSpec((2, 3, 5), tf.float32), tf.TensorSpec((5, 7), tf.float32)
    graph = tf.function(lambda x, y: tf.einsum("bij,jk->bik", x, y)).get_concrete_function(a, b).graph
    assert graph_flops(graph) == 2 * 2 * 3 * 5 * 7
    graph = tf.function(lambda x, y: tf.matmul(x, y)).get_concrete_function(
        tf.TensorSpec((3, 5)), tf.TensorSpec((5, 7))).graph
    assert graph_flops(graph) == 2 * 3 * 5 * 7


@pytest.mark.parametrize("fusion", ["bottleneck", "cross", "vanilla"])
def test_per_layer_assembly_equals_the_whole_model_graph(fusion):
    config = from_preset("mbt-tiny", fusion=fusion)
    assembled = flops_by_fusion_layer(config, [0, 2, 4])
    for lf in (0, 2, 4):
        layered = config.replace(fusion_layer=lf)
        assert assembled[lf] == model_flops(build_model(layered), layered)


def test_b16_bottleneck_costs_within_one_percent_of_late_fusion_at_every_fusion_layer(b16_table):
    bottleneck = b16_table["bottleneck"]
    late = bottleneck[12]
    assert set(bottleneck) == {0, 2, 4, 6, 8, 10, 12}
    assert 400 < late < 500  # two ViT-B/16 encoders over 1569 + 401 tokens
    for lf, gflops in bottleneck.items():
        assert late <= gflops < 1.01 * late, lf


def test_b16_cross_fusion_cost_grows_with_the_number_of_fused_layers(b16_table):
    cross = b16_table["cross"]
    fused_layers = sorted(cross, reverse=True)  # Lf = 12, 10, ..., 0 -> L - Lf = 0, 2, ..., 12
    costs = [cross[lf] for lf in fused_layers]
    assert all(b > a for a, b in zip(costs, costs[1:]))
    assert cross[0] > 1.1 * b16_table["bottleneck"][0]


def test_flops_command_writes_table_summary_and_plot(tmp_path, capsys):
    from pipeline.cli import main
    assert main(["flops", "--preset", "mbt-micro", "--logdir", str(tmp_path / "tb"),
                 "--plot", str(tmp_path / "flops.png")]) == 0
    out = capsys.readouterr().out
    assert "| 2 (late) |" in out and "bottleneck GFLOPs" in out and "cross GFLOPs" in out
    assert (tmp_path / "flops.png").stat().st_size > 1000
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_summary_command_prints_encoder_and_total_parameters(capsys):
    from pipeline.cli import main
    assert main(["summary", "--preset", "mbt-micro", "--set", "fusion_layer=0"]) == 0
    out = capsys.readouterr().out
    total = build_model(from_preset("mbt-micro", fusion_layer=0)).count_params()
    assert f"{total:,}" in out and "rgb_encoder" in out and "spec_encoder" in out
