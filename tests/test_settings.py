import pytest

from aio_core.settings import Settings, SettingsError


def test_environment_variables_fill_every_field_and_flags_win():
    env = {"AIO_MODEL": "some/model", "AIO_THREADS": "3", "AIO_UNCERTAIN_BELOW": "80%", "AIO_DTYPE": "float32",
           "AIO_DB_URL": "sqlite:///x.db", "AIO_BATCH_SIZE": " ", "AIO_UI_LANG": "zh"}
    settings = Settings.from_env(env, threads=2, model=None)
    assert settings.model == "some/model"
    assert settings.threads == 2  # the CLI flag beats AIO_THREADS
    assert settings.uncertain_below == pytest.approx(0.8)
    assert settings.batch_size == Settings().batch_size  # blank means "use the default"
    assert (settings.dtype, settings.db_url, settings.ui_lang) == ("float32", "sqlite:///x.db", "zh")


@pytest.mark.parametrize("env, named", [
    ({"AIO_DEVICE": "tpu"}, "AIO_DEVICE"),
    ({"AIO_THREADS": "many"}, "AIO_THREADS"),
    ({"AIO_BATCH_SIZE": "0"}, "AIO_BATCH_SIZE"),
    ({"AIO_UNCERTAIN_BELOW": "1.5"}, "AIO_UNCERTAIN_BELOW"),
    ({"AIO_ALERT_LAST_K": "6"}, "AIO_ALERT_LAST_K"),
])
def test_bad_values_name_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_empty_model_is_refused():
    with pytest.raises(SettingsError, match="AIO_MODEL"):
        Settings(model="  ")
