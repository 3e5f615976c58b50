"""Every loader on the committed excerpts (everywhere) and on the full datasets (counts from their READMEs,
where the full data is present), plus edge and error cases."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.data_roots import EXCERPTS, FULL
from training.data.images import (
    load_image_folder,
    load_mnist_idx,
    load_mnist_pool,
    load_optdigits,
    load_sklearn_digits,
)
from training.data.paths import cache_dir, dataset_checksum, default_datasets_dir, file_sha256, shared_datasets_dir
from training.data.split import stratified_split
from training.data.tabular import THYROID_FEATURES, fit_scaler, is_anomaly, load_numeric_csv, load_thyroid
from training.data.text import (
    load_delimited,
    load_sentiment,
    load_sentiment_file,
    load_sentiment_with_sources,
    load_sms_spam,
)
from training.data.timeseries import fit_normaliser, load_nab, normalise, sliding_windows

DATASETS = FULL
NAB = DATASETS / "nab_realKnownCause"
MACHINE_TEMPERATURE = NAB / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
full_data = pytest.mark.full_data


# --- paths ---------------------------------------------------------------------------------------


def test_datasets_dir_follows_env_then_shared_then_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("AXON_DATASETS", str(tmp_path))
    assert default_datasets_dir() == tmp_path
    monkeypatch.delenv("AXON_DATASETS")
    assert shared_datasets_dir().parts[-2:] == ("shared", "datasets")
    monkeypatch.setattr("training.data.paths.REPO_ROOT", tmp_path / "clone")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_datasets_dir() == cache_dir() == tmp_path / "cache" / "axon" / "datasets"  # no ../shared
    (tmp_path / "shared" / "datasets").mkdir(parents=True)
    assert default_datasets_dir() == tmp_path / "shared" / "datasets"


@full_data("sms_spam", "mnist_test10k")
def test_checksums_match_the_readme():
    sms = DATASETS / "sms_spam" / "SMSSpamCollection.tsv"
    readme_sha = "80dd74ebb8c76a0c08886bd09c829ffc9f352b0d5a81d3c1fd6084155a5c2453"
    assert file_sha256(sms) == readme_sha
    assert dataset_checksum([sms]) == readme_sha
    pool = sorted((DATASETS / "mnist_test10k").glob("*.gz"))
    assert dataset_checksum(pool) != dataset_checksum(pool[::-1])  # order is part of the fingerprint


# --- images --------------------------------------------------------------------------------------


def test_mnist_pool_excerpt():
    x, y = load_mnist_pool(EXCERPTS / "mnist_test10k")
    assert x.shape == (300, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [26, 46, 35, 23, 29, 34, 24, 34, 19, 30]
    assert x.max() == 255 and x[:, 0, 0].max() == 0  # ink on a zero background


@full_data("mnist_test10k")
def test_mnist_pool_counts():
    x, y = load_mnist_pool(DATASETS / "mnist_test10k")
    assert x.shape == (8000, 28, 28) and x.dtype == np.uint8
    assert y.dtype == np.int64
    assert np.bincount(y).tolist() == [790, 916, 809, 793, 779, 724, 756, 844, 778, 811]
    assert x.max() == 255 and x[:, 0, 0].max() == 0  # ink on a zero background


def _write_idx(path: Path, magic: int, dims: list[int], payload: bytes) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    path.write_bytes(header + payload)


def test_mnist_idx_raw_files_and_errors(tmp_path):
    images, labels = tmp_path / "i-idx3-ubyte", tmp_path / "l-idx1-ubyte"
    _write_idx(images, 2051, [2, 3, 4], bytes(range(24)))
    _write_idx(labels, 2049, [2], bytes([7, 1]))
    x, y = load_mnist_idx(images, labels)
    assert x.shape == (2, 3, 4) and x[1, 2, 3] == 23 and y.tolist() == [7, 1]

    with pytest.raises(ValueError, match="magic number is 2049, expected 2051"):
        load_mnist_idx(labels, labels)
    _write_idx(tmp_path / "short", 2051, [2, 3, 4], bytes(20))
    with pytest.raises(ValueError, match="need 40"):
        load_mnist_idx(tmp_path / "short", labels)
    _write_idx(tmp_path / "long", 2051, [2, 3, 4], bytes(25))  # trailing bytes: not the file the header describes
    with pytest.raises(ValueError, match="41 bytes, but header dims"):
        load_mnist_idx(tmp_path / "long", labels)
    _write_idx(tmp_path / "three", 2049, [3], bytes(3))
    with pytest.raises(ValueError, match=r"2 images but .* 3 labels"):
        load_mnist_idx(images, tmp_path / "three")


def test_mnist_idx_gzip_detected_by_content(tmp_path):
    raw = tmp_path / "raw"
    _write_idx(raw, 2049, [2], bytes([3, 4]))
    zipped = tmp_path / "labels.bin"
    zipped.write_bytes(gzip.compress(raw.read_bytes()))
    images = tmp_path / "images"
    _write_idx(images, 2051, [2, 1, 1], bytes([9, 8]))
    assert load_mnist_idx(images, zipped)[1].tolist() == [3, 4]


def _write_image_folder(root: Path) -> None:
    (root / "cat").mkdir(parents=True)
    (root / "ant").mkdir()
    Image.new("L", (10, 8), 200).save(root / "cat" / "a.png")
    Image.new("RGB", (10, 8), (255, 0, 0)).save(root / "cat" / "b.JPG", quality=95)
    Image.new("RGBA", (20, 16), (0, 0, 255, 255)).save(root / "ant" / "c.png")
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "ant" / ".hidden.png").write_bytes(b"junk")


def test_image_folder_grayscale_resized(tmp_path):
    _write_image_folder(tmp_path)
    x, y, classes = load_image_folder(tmp_path, size=(8, 10), channels=1)
    assert classes == ["ant", "cat"]
    assert x.shape == (3, 8, 10) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 1]
    assert x[1].min() == x[1].max() == 200  # the grey PNG kept its value
    assert 70 < x[2].mean() < 82  # pure red in "L" is ~76 (JPEG may move it a little)


def test_image_folder_resizes_bilinearly_as_the_service_does(tmp_path):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.array([[0, 200]], dtype=np.uint8), "L").save(tmp_path / "only" / "ramp.png")
    x, _, _ = load_image_folder(tmp_path, size=(1, 4))
    assert x[0].tolist() == [[0, 50, 150, 200]]  # nearest-neighbour would give [0, 0, 200, 200]


def test_image_folder_rgb(tmp_path):
    _write_image_folder(tmp_path)
    x, _, _ = load_image_folder(tmp_path, size=(4, 5), channels=3)
    assert x.shape == (3, 4, 5, 3)
    assert x[0, :, :, 2].min() == 255 and x[0, :, :, 0].max() == 0  # blue stays blue


def test_image_folder_errors(tmp_path):
    _write_image_folder(tmp_path / "mixed")
    with pytest.raises(ValueError, match="differ in size"):
        load_image_folder(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "empty" / "dog").mkdir()
    (tmp_path / "empty" / "dog" / "readme.md").write_text("x")
    with pytest.raises(ValueError, match="holds no PNG/JPEG"):
        load_image_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load_image_folder(tmp_path / "absent")


def test_optdigits_excerpt_equals_sklearn_digits():
    x, y = load_optdigits(EXCERPTS / "optdigits" / "optdigits.tes")  # header line ends in CRLF, rows in LF
    assert x.shape == (200, 8, 8) and x.dtype == np.uint8 and x.max() == 255
    x_sk, y_sk = load_sklearn_digits()
    assert np.array_equal(x, x_sk[:200]) and np.array_equal(y, y_sk[:200])


def test_optdigits_refuses_a_cell_count_above_16(tmp_path):
    row = ",".join(["16"] * 63 + ["17", "3"])
    (tmp_path / "bad.tra").write_text(row + "\n")
    with pytest.raises(ValueError, match=r"cell counts outside 0\.\.16"):
        load_optdigits(tmp_path / "bad.tra")


@full_data("optdigits")
def test_optdigits_counts_and_sklearn_fallback():
    x_tra, y_tra = load_optdigits(DATASETS / "optdigits" / "optdigits.tra")
    assert x_tra.shape == (3823, 8, 8) and x_tra.dtype == np.uint8 and x_tra.max() == 255
    assert np.bincount(y_tra).tolist() == [376, 389, 380, 389, 387, 376, 377, 387, 380, 382]
    x_tes, y_tes = load_optdigits(DATASETS / "optdigits" / "optdigits.tes")
    assert np.bincount(y_tes).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    # scikit-learn's bundled digits are optdigits' test part, scaled the same way.
    x_sk, y_sk = load_sklearn_digits()
    assert x_sk.shape == (1797, 8, 8) and x_sk.dtype == np.uint8
    assert np.array_equal(x_sk, x_tes) and np.array_equal(y_sk, y_tes)


# --- text ----------------------------------------------------------------------------------------


def test_sms_spam_excerpt():
    texts, labels = load_sms_spam(EXCERPTS / "sms_spam" / "SMSSpamCollection.tsv")
    assert len(texts) == 300 and Counter(labels) == {"ham": 251, "spam": 49}
    assert all("\t" not in t and t for t in texts)


@full_data("sms_spam")
def test_sms_spam_counts():
    texts, labels = load_sms_spam(DATASETS / "sms_spam" / "SMSSpamCollection.tsv")
    assert len(texts) == 4459
    assert Counter(labels) == {"ham": 3871, "spam": 588}
    assert all("\t" not in t for t in texts)
    assert sum('"' in t for t in texts) > 0  # quotes kept verbatim, not parsed


def test_sms_spam_rejects_wrong_header(tmp_path):
    path = tmp_path / "sms.tsv"
    path.write_text("ham\thello\n", encoding="utf-8")
    with pytest.raises(ValueError, match="header"):
        load_sms_spam(path)


def test_sms_spam_refuses_a_label_other_than_ham_or_spam(tmp_path):
    path = tmp_path / "sms.tsv"
    path.write_text("Label\tSMS\nham\thello\nSpam\tWIN now\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sms.tsv:3: expected 'ham\|spam<TAB>message'"):
        load_sms_spam(path)


def test_sentiment_label_follows_the_last_tab(tmp_path):
    path = tmp_path / "mine_labelled.txt"
    path.write_text("a tab\tinside, still one sentence\t1\nbad  \t 0\nno label here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"mine_labelled.txt:3: expected"):
        load_sentiment_file(path)
    path.write_text("a tab\tinside, still one sentence\t1\nbad  \t 0\n", encoding="utf-8")
    assert load_sentiment_file(path) == (["a tab\tinside, still one sentence", "bad"], ["positive", "negative"])


def test_sentiment_excerpt_keeps_the_nel_trap():
    texts, labels, sources = load_sentiment_with_sources(EXCERPTS / "sentiment_labelled_sentences")
    assert Counter(sources) == {"amazon_cells": 100, "imdb": 102, "yelp": 100}
    assert Counter(labels) == {"negative": 125, "positive": 177}
    assert sum("\x85" in t for t in texts) == 2  # NEL kept inside its sentence, not a line break
    assert all(t == t.strip() and t for t in texts)


@full_data("sentiment_labelled_sentences")
def test_sentiment_counts_per_source_and_label():
    texts, labels, sources = load_sentiment_with_sources(DATASETS / "sentiment_labelled_sentences")
    assert len(texts) == len(labels) == len(sources) == 2400
    assert Counter(sources) == {"amazon_cells": 813, "imdb": 794, "yelp": 793}
    assert Counter(labels) == {"negative": 1187, "positive": 1213}
    assert Counter(zip(sources, labels))[("imdb", "negative")] == 391
    assert sum("\x85" in t for t in texts) == 2  # NEL kept inside its sentence, not a line break
    assert all(t == t.strip() and t for t in texts)
    assert load_sentiment(DATASETS / "sentiment_labelled_sentences") == (texts, labels)


def test_delimited_csv_with_quotes(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        'id,review,stars\n1,"Great, really great",good\n2,"She said ""meh""\nand left",bad\n\n3,plain text, good \n',
        encoding="utf-8",
    )
    texts, labels = load_delimited(path, text_column="review", label_column="stars", delimiter=",", header=True)
    assert texts == ["Great, really great", 'She said "meh"\nand left', "plain text"]
    assert labels == ["good", "bad", "good"]
    by_index = load_delimited(path, text_column=1, label_column=2, delimiter=",", header=True)
    assert by_index == (texts, labels)
    with pytest.raises(KeyError, match="no column 'label'"):
        load_delimited(path, text_column="review", label_column="label", delimiter=",", header=True)


def test_delimited_row_too_short_for_the_columns_names_its_line(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("id,review,stars\n1,fine,good\n2,no stars\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 3 has 2 fields, too few"):  # line 3 of the file: after the header
        load_delimited(path, text_column="review", label_column="stars", delimiter=",", header=True)


def test_a_delimited_datasets_classes_are_its_labels_sorted_not_met(tmp_path):
    from training.data.kinds import load_dataset

    path = tmp_path / "reviews.tsv"
    path.write_text("good film\tpos\nbad film\tneg\nfine\tpos\n")
    data = load_dataset("delimited", path, text_column="0", label_column="1")
    assert data["labels"] == ["neg", "pos"]  # class ids that do not hang on the file's row order
    assert data["y"].tolist() == [1, 0, 1]


def test_delimited_tsv_without_header(tmp_path):
    path = tmp_path / "data.tsv"
    path.write_text("spam\tWIN now\nham\tsee you\n", encoding="utf-8")
    assert load_delimited(path, text_column=1, label_column=0, header=False) == (
        ["WIN now", "see you"],
        ["spam", "ham"],
    )
    with pytest.raises(TypeError, match="integer indices"):
        load_delimited(path, text_column="text", label_column=0, header=False)


# --- tabular -------------------------------------------------------------------------------------


def test_thyroid_excerpt():
    x, cls = load_thyroid(EXCERPTS / "thyroid_ann" / "ann-train.data")
    assert x.shape == (300, 21) and x.dtype == np.float32
    assert np.bincount(cls, minlength=4)[1:].tolist() == [8, 7, 285]
    assert x[0, 0] == np.float32(0.73) and x[0, 20] == np.float32(0.146)  # README's first row


@full_data("thyroid_ann")
def test_thyroid_counts():
    x, cls = load_thyroid(DATASETS / "thyroid_ann" / "ann-train.data")
    assert len(THYROID_FEATURES) == 21 and THYROID_FEATURES[16:] == ["TSH", "T3", "TT4", "T4U", "FTI"]
    assert x.shape == (3772, 21) and x.dtype == np.float32 and cls.dtype == np.int64
    assert np.bincount(cls, minlength=4)[1:].tolist() == [93, 191, 3488]
    assert is_anomaly(cls).sum() == 93
    assert x[0, 0] == np.float32(0.73) and x[0, 20] == np.float32(0.146)  # README's first row


def test_numeric_csv_with_header_and_scaler(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("a,label,b\n1,normal,5\n3,anomaly,5\n", encoding="utf-8")
    x, labels, names = load_numeric_csv(path, label_column="label", header=True)
    assert names == ["a", "b"] and x.tolist() == [[1, 5], [3, 5]]
    assert labels.tolist() == ["normal", "anomaly"]
    mean, scale = fit_scaler(x)
    assert mean.tolist() == [2, 5] and scale.tolist() == [1, 1]  # constant column b keeps scale 1
    path.write_text("1,2\n3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="fields"):
        load_numeric_csv(path, label_column=None, header=False)


# --- time series ---------------------------------------------------------------------------------


def test_nab_excerpt_with_its_first_label_window():
    series = load_nab(
        EXCERPTS / "nab_realKnownCause" / "data" / "realKnownCause" / "machine_temperature_system_failure.csv"
    )
    assert series.name == "realKnownCause/machine_temperature_system_failure.csv"
    assert len(series) == 3000 and series.timestamps[0] == np.datetime64("2013-12-02T21:15:00")
    assert series.windows == [(2126, 2692)] and series.labels.sum() == 567  # data lines 2128..2694 of the file
    assert series.timestamps[series.anomaly_points[0]] == np.datetime64("2013-12-11T06:00:00")


@full_data("nab_realKnownCause")
def test_nab_machine_temperature():
    series = load_nab(MACHINE_TEMPERATURE)
    assert series.name == "realKnownCause/machine_temperature_system_failure.csv"
    assert len(series) == 22695 and series.values.dtype == np.float64
    assert series.timestamps.dtype == np.dtype("datetime64[s]")
    assert series.timestamps[0] == np.datetime64("2013-12-02T21:15:00")
    assert len(series.windows) == 4 and series.labels.sum() == 2268
    start, end = series.windows[0]
    assert series.timestamps[start] == np.datetime64("2013-12-10T06:25:00")
    assert series.timestamps[end] == np.datetime64("2013-12-12T05:35:00")
    assert all(s <= p <= e for p, (s, e) in zip(series.anomaly_points, series.windows))
    assert series.step == np.timedelta64(300, "s")
    assert series.irregular_steps.tolist() == [10148]  # the file repeats the hour 02:00-02:55 of 2014-01-07


@full_data("nab_realKnownCause")
def test_nab_every_series_matches_the_readme():
    expected = {
        "ambient_temperature_system_failure.csv": (7267, 2, 726),
        "cpu_utilization_asg_misconfiguration.csv": (18050, 1, 1499),
        "ec2_request_latency_system_failure.csv": (4032, 3, 346),
        "nyc_taxi.csv": (10320, 5, 1035),
        "rogue_agent_key_hold.csv": (1882, 2, 190),
        "rogue_agent_key_updown.csv": (5315, 2, 530),
    }
    for name, (rows, windows, inside) in expected.items():
        series = load_nab(NAB / "data" / "realKnownCause" / name)
        assert (len(series), len(series.windows), int(series.labels.sum())) == (rows, windows, inside), name


def test_nab_without_label_files(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,2\n", encoding="utf-8")
    series = load_nab(path)
    assert series.windows == [] and not series.labels.any() and series.irregular_steps.size == 0
    with pytest.raises(KeyError, match="no entry"):
        load_nab(path, windows_json=EXCERPTS / "nab_realKnownCause" / "labels" / "combined_windows.json")


def test_nab_refuses_a_non_finite_value(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,nan\n", encoding="utf-8")
    with pytest.raises(ValueError, match="values must be finite"):
        load_nab(path)


def test_sliding_windows_and_normaliser():
    values = np.arange(10, dtype=np.float64)
    windows = sliding_windows(values, window=4, stride=3)
    assert windows.tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    mean, std = fit_normaliser(values)
    assert mean == 4.5 and std == pytest.approx(np.std(values))
    z = normalise(values, mean, std)
    assert z.dtype == np.float32 and abs(z.mean()) < 1e-6
    assert fit_normaliser(np.full(5, 3.0)) == (3.0, 1.0)


# --- split ---------------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_and_stratified():
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    train, val, test = stratified_split(y, seed=7)
    again = stratified_split(y, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, stratified_split(y, seed=8)[0])
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    class_sizes = np.bincount(y)
    for part, fraction in zip((train, val, test), (0.7, 0.15, 0.15)):
        # Every class is cut at its own fraction, within one row of rounding.
        assert np.abs(np.bincount(y[part], minlength=3) - fraction * class_sizes).max() < 1


def test_split_of_string_labels_and_bad_fractions():
    train, val = stratified_split(["a", "b"] * 10, fractions=(0.8, 0.2))
    assert len(train) == 16 and len(val) == 4
    with pytest.raises(ValueError, match="summing to 1"):
        stratified_split([0, 1], fractions=(0.5, 0.6))
