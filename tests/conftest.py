import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A test-size base model built by the real build path (seconds, not the shipped model)."""
    from labhelpers.basemodel import SPECS, build_base_model

    return build_base_model(tmp_path_factory.mktemp("models") / "tiny-test", SPECS["test"], log=None)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)
