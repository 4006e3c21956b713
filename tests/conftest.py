import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A test-size base model built by the real build path (seconds, not the shipped model)."""
    from labhelpers.models.basemodel import SPECS, build_base_model

    return build_base_model(tmp_path_factory.mktemp("models") / "tiny-test", SPECS["test"], log=None)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


# The ONNX tests (test_export, test_onnx_infer, test_serve) share their artefacts through
# tests/onnx_artefacts.py, built once per session under this folder.
@pytest.fixture(scope="session")
def root(tmp_path_factory):
    import onnx_artefacts

    return onnx_artefacts.root_for(tmp_path_factory)


@pytest.fixture(scope="session")
def base(tiny_model_dir):
    return str(tiny_model_dir)
