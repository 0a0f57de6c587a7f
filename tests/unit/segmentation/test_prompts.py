"""Prompt rules from retrieved reference masks: presence vote, median box, nested labels."""

from __future__ import annotations

import numpy as np

from rafss_core.segmentation.prompts import (
    PromptRule,
    box_of,
    enclosures,
    label_prompt,
    resample_nearest,
)


def _ring_case(shape=(64, 64), cy=32, cx=32, r_in=8, r_out=14) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy - cy) ** 2 + (xx - cx) ** 2
    lab = np.zeros(shape, np.int16)
    lab[d2 < r_out**2] = 2  # MYO ring
    lab[d2 < r_in**2] = 3  # LV cavity inside it
    lab[5:15, 5:20] = 1  # RV elsewhere
    return lab


def test_box_of_and_empty():
    m = np.zeros((10, 10), bool)
    assert box_of(m) is None
    m[2:5, 3:8] = True
    assert box_of(m) == (3.0, 2.0, 7.0, 4.0)


def test_presence_is_a_majority_vote():
    present = np.zeros((20, 20), np.int16)
    present[5:10, 5:10] = 1
    absent = np.zeros((20, 20), np.int16)
    rule = PromptRule(margin=0.0)
    assert label_prompt([present, present, absent, absent], 1, rule).box is not None
    assert label_prompt([present, absent, absent, absent], 1, rule).box is None
    assert label_prompt([present, absent, absent, absent], 1,
                        PromptRule(presence=0.25)).box is not None


def test_median_box_ignores_one_outlier_and_grows_by_the_margin():
    refs = []
    for x0 in (10, 11, 12, 40):  # one reference is far off
        lab = np.zeros((60, 60), np.int16)
        lab[10:20, x0 : x0 + 10] = 1
        refs.append(lab)
    box = label_prompt(refs, 1, PromptRule(margin=0.0)).box
    assert box == (11.5, 10.0, 20.5, 19.0)
    grown = label_prompt(refs, 1, PromptRule(margin=0.05)).box
    assert grown == (11.5 - 3, 10.0 - 3, 20.5 + 3, 19.0 + 3)
    top1 = label_prompt(refs, 1, PromptRule(margin=0.0, box_from="top1")).box
    assert top1 == (10.0, 10.0, 19.0, 19.0)


def test_enclosures_find_the_cavity_inside_the_ring():
    refs = [_ring_case(), _ring_case(cx=30), _ring_case(cy=34)]
    assert enclosures(refs, [1, 2, 3]) == {2: [3]}


def test_a_ring_is_prompted_as_its_filled_outline():
    ref = _ring_case()
    ring_only = label_prompt([ref], 2, PromptRule(margin=0.0, dense_prior=True))
    nested = label_prompt([ref], 2, PromptRule(margin=0.0, dense_prior=True), enclosed=[3])
    assert ring_only.box == nested.box  # same outline box...
    assert ring_only.prior[32, 32] == 0 and nested.prior[32, 32] == 1  # ...filled prior


def test_resample_nearest_maps_label_maps_between_grids():
    lab = np.zeros((4, 4), np.int16)
    lab[:2, :2] = 1
    out = resample_nearest(lab, (8, 8))
    assert out.shape == (8, 8) and out[:4, :4].all() and not out[4:, 4:].any()


def test_filled_equals_filling_the_whole_image():
    """Filling only the bounding box gives scipy's whole-image result: rings with holes,
    masks touching the image edge, a hole open to the box's border, nothing at all."""
    from scipy.ndimage import binary_fill_holes

    from rafss_core.segmentation.prompts import filled

    yy, xx = np.mgrid[:64, :80]
    ring = np.abs(np.hypot(yy - 30, xx - 40) - 12) < 3
    edge = np.abs(np.hypot(yy - 5, xx - 2) - 8) < 2  # cut by the top-left corner
    c_shape = ring & ~((yy > 28) & (yy < 33) & (xx > 45))  # its hole opens to the outside
    rng = np.random.default_rng(0)
    cases = [ring, edge, c_shape, ring | edge, rng.random((64, 80)) > 0.6,
             np.zeros((64, 80), bool)]
    for mask in cases:
        assert np.array_equal(filled(mask), binary_fill_holes(mask))
    assert filled(ring).sum() > ring.sum()  # the hole is filled


def test_keep_components_drops_islands_the_references_do_not_have():
    """A label that is one blob in every reference keeps only its largest component; a label
    that a reference shows in two pieces keeps two; an unheld label is left alone."""
    from rafss_core.segmentation.prompts import keep_components

    pred = np.zeros((40, 40), np.uint16)
    pred[5:15, 5:15] = 1  # the structure
    pred[30:33, 30:33] = 1  # a stray island
    pred[20:24, 2:6] = 2
    pred[20:26, 30:36] = 2  # label 2 in two pieces, as in the second reference
    pred[0:2, 38:40] = 3  # no reference holds label 3
    one = np.zeros((40, 40), np.uint16)
    one[6:14, 6:14] = 1
    two = one.copy()
    two[20:24, 2:6] = 2
    two[20:26, 30:36] = 2
    kept = keep_components(pred, [one, two], [1, 2, 3])
    assert (kept == 1).sum() == 100 and kept[31, 31] == 0
    assert (kept == 2).sum() == (pred == 2).sum()
    assert (kept == 3).sum() == 4
    single = one.copy()
    single[20:26, 30:36] = 2  # label 2 in one piece in every reference
    kept = keep_components(pred, [single, single], [2])
    assert (kept == 2).sum() == 36 and kept[21, 3] == 0  # the larger piece stays
