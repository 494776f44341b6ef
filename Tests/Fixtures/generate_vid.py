"""Writes Tests/Fixtures/vid: a small ImageNet VID tree (Annotations/VID/val/<video>/<frame>.xml,
ImageSets/VID/VID_val_frames.txt and VID_val_videos.txt), detections, motion IoUs (.txt for
`dcn-eval vid --motion`, .mat in the layout MSRA's script reads) and the expected APs computed by
scripts/imagenet_vid_eval.py (the Python 3 port of MSRA's imagenet_vid_eval.py /
imagenet_vid_eval_motion.py). Deterministic (numpy RandomState 20261206).

Run from the repository root with numpy and scipy: python Tests/Fixtures/generate_vid.py

What the fixture exercises: four videos (one with a frame without objects), seven of the 30 classes
with ground truth (the others have none), small objects whose threshold is below 0.5
(wh / ((w+10)(h+10))), detections that match only through that lower threshold, duplicates,
wrong-class and background detections, a class with ground truth but no detections, detections of
frames outside the image set (ignored), motion IoUs on the range bounds 0.7 and 0.9, and a second
detection file with detections of a class that has no ground truth (the script's NaN)."""
import os
import subprocess
import sys

import numpy as np
import scipy.io as sio

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'vid')
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, 'scripts'))
from imagenet_vid_eval import VID_CLASSES_MAP  # noqa: E402

rng = np.random.RandomState(20261206)
WIDTH, HEIGHT = 320, 240
# (video folder, frame count, [(class index, track id, x, y, w, h, dx, dy, dw, dh)])
VIDEOS = [
    ('val/ILSVRC2015_val_00000000', 8, [(1, 0, 20, 30, 80, 50, 6, 1, 2, 1), (7, 1, 200, 150, 9, 7, -1, 0, 0, 0)]),
    ('val/ILSVRC2015_val_00000001', 6, [(5, 0, 100, 60, 12, 10, 2, 2, 1, 0), (5, 1, 40, 40, 60, 90, -2, 1, -1, 0),
                                         (9, 2, 150, 20, 120, 100, 3, 3, -2, -2)]),
    ('val/ILSVRC2015_val_00000002', 5, [(30, 0, 10, 10, 200, 180, 10, 5, -5, -5), (15, 1, 250, 100, 6, 5, 1, 1, 0, 0)]),
    ('val/ILSVRC2015_val_00000003', 4, [(28, 0, 60, 120, 40, 30, 4, -2, 0, 0)]),
]
EMPTY_FRAME = ('val/ILSVRC2015_val_00000003', 2)  # this frame has no objects


def frames():
    """[(frame path, frame id, [(label, track, x1, y1, x2, y2)])] over the videos; ids 1... in order."""
    out, fid = [], 1
    for folder, count, tracks in VIDEOS:
        for t in range(count):
            objs = []
            if (folder, t) != EMPTY_FRAME:
                for (c, tr, x, y, w, h, dx, dy, dw, dh) in tracks:
                    x1, y1 = x + dx * t, y + dy * t
                    bw, bh = max(3, w + dw * t), max(3, h + dh * t)
                    objs.append((c, tr, x1, y1, min(WIDTH - 1, x1 + bw - 1), min(HEIGHT - 1, y1 + bh - 1)))
            out.append(('%s/%06d' % (folder, t), fid, objs))
            fid += 1
    return out


def write_xml(path, folder, frame, objs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = ['<annotation>', '\t<folder>%s</folder>' % folder.split('/')[-1], '\t<filename>%s</filename>' % frame,
             '\t<source>', '\t\t<database>ILSVRC_2015</database>', '\t</source>',
             '\t<size>', '\t\t<width>%d</width>' % WIDTH, '\t\t<height>%d</height>' % HEIGHT, '\t</size>']
    for (c, tr, x1, y1, x2, y2) in objs:
        lines += ['\t<object>', '\t\t<trackid>%d</trackid>' % tr, '\t\t<name>%s</name>' % VID_CLASSES_MAP[c],
                  '\t\t<bndbox>', '\t\t\t<xmax>%d</xmax>' % x2, '\t\t\t<xmin>%d</xmin>' % x1,
                  '\t\t\t<ymax>%d</ymax>' % y2, '\t\t\t<ymin>%d</ymin>' % y1, '\t\t</bndbox>',
                  '\t\t<occluded>%d</occluded>' % (tr % 2), '\t\t<generated>%d</generated>' % (1 if (x1 + y1) % 3 == 0 else 0),
                  '\t</object>']
    lines.append('</annotation>')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def unique_score(used):
    """A score printed with 4 decimals as FGFA writes them, distinct from every other one."""
    while True:
        s = round(float(rng.uniform(0.01, 0.999)), 4)
        if s not in used:
            used.add(s)
            return s


def jitter(box, scale):
    x1, y1, x2, y2 = box
    w, h = x2 - x1 + 1, y2 - y1 + 1
    d = rng.normal(0, scale, 4) * np.array([w, h, w, h])
    return [x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]]


def detections(all_frames):
    used, lines = set(), []
    for path, fid, objs in all_frames:
        for (c, tr, x1, y1, x2, y2) in objs:
            if c == 28:  # watercraft: ground truth, no detections
                continue
            r = rng.uniform()
            if r < 0.75:  # a good or mediocre detection
                lines.append((fid, c, unique_score(used), jitter((x1, y1, x2, y2), 0.08 if rng.uniform() < 0.6 else 0.25)))
            if r < 0.2:  # a duplicate
                lines.append((fid, c, unique_score(used), jitter((x1, y1, x2, y2), 0.1)))
            if rng.uniform() < 0.15:  # the right place, the wrong class
                lines.append((fid, [1, 5, 7, 9, 15, 30][rng.randint(6)], unique_score(used), jitter((x1, y1, x2, y2), 0.05)))
        for _ in range(rng.randint(0, 3)):  # background
            x, y = rng.uniform(0, WIDTH - 40), rng.uniform(0, HEIGHT - 40)
            w, h = rng.uniform(5, 60), rng.uniform(5, 60)
            lines.append((fid, [1, 5, 7, 9, 15, 30][rng.randint(6)], unique_score(used), [x, y, x + w, y + h]))
    # Small objects: boxes at IoU between their own threshold and 0.5 (match only through it).
    for path, fid, objs in all_frames:
        for (c, tr, x1, y1, x2, y2) in objs:
            if (x2 - x1 + 1) * (y2 - y1 + 1) < 150:
                lines.append((fid, c, unique_score(used), [x1 + 2, y1 + 1, x2 + 3, y2 + 2]))
    # Frames outside the image set: ignored by the evaluation.
    lines.append((999, 1, unique_score(used), [1, 1, 50, 50]))
    lines.append((1000, 7, unique_score(used), [5, 5, 20, 20]))
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def write_detections(path, lines):
    with open(path, 'w') as f:
        for fid, c, s, b in lines:
            f.write('{:d} {:d} {:.4f} {:.2f} {:.2f} {:.2f} {:.2f}\n'.format(fid, c, s, b[0], b[1], b[2], b[3]))


def main():
    all_frames = frames()
    base = os.path.join(OUT, 'Annotations', 'VID')
    for path, fid, objs in all_frames:
        folder, frame = path.rsplit('/', 1)
        write_xml(os.path.join(base, path + '.xml'), folder, frame, objs)
    sets = os.path.join(OUT, 'ImageSets', 'VID')
    os.makedirs(sets, exist_ok=True)
    with open(os.path.join(sets, 'VID_val_frames.txt'), 'w') as f:
        for path, fid, _ in all_frames:
            f.write('%s %d\n' % (path, fid))
    with open(os.path.join(sets, 'VID_val_videos.txt'), 'w') as f:
        fid = 1
        for folder, count, _ in VIDEOS:
            f.write('%s %d 0 %d\n' % (folder, fid, count))
            fid += count
    dets = detections(all_frames)
    write_detections(os.path.join(OUT, 'detections.txt'), dets)
    used = {d[2] for d in dets}
    extra = [(3, 2, unique_score(used), [30, 30, 90, 80]), (9, 2, unique_score(used), [10, 10, 40, 40])]  # antelope: no ground truth
    write_detections(os.path.join(OUT, 'detections_class_without_truth.txt'), dets + extra)
    # Motion IoU per object: uniform in [0.4, 1], some exactly on the bounds 0.7 and 0.9.
    rows = []
    for path, fid, objs in all_frames:
        row = [float(rng.choice([0.7, 0.9])) if rng.uniform() < 0.15 else round(float(rng.uniform(0.4, 1.0)), 6) for _ in objs]
        rows.append(row)
    with open(os.path.join(OUT, 'motion_iou.txt'), 'w') as f:
        for (path, _, _), row in zip(all_frames, rows):
            f.write(' '.join([path] + [repr(v) for v in row]) + '\n')
    cells = np.empty((len(rows), 1), dtype=object)
    for i, row in enumerate(rows):
        cells[i, 0] = np.array(row, dtype=np.float64).reshape(-1, 1) if row else np.zeros((0, 0))
    sio.savemat(os.path.join(OUT, 'motion_iou.mat'), {'motion_iou': cells})
    script = os.path.join(ROOT, 'scripts', 'imagenet_vid_eval.py')
    frames_list = os.path.join(sets, 'VID_val_frames.txt')
    subprocess.check_call([sys.executable, script, base, frames_list, os.path.join(OUT, 'detections.txt'),
                           os.path.join(OUT, 'expected.json'), '--motion', os.path.join(OUT, 'motion_iou.mat')], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, script, base, frames_list, os.path.join(OUT, 'detections.txt'),
                           os.path.join(OUT, 'expected_text_motion.json'), '--motion', os.path.join(OUT, 'motion_iou.txt')], stdout=subprocess.DEVNULL)
    subprocess.check_call([sys.executable, script, base, frames_list, os.path.join(OUT, 'detections_class_without_truth.txt'),
                           os.path.join(OUT, 'expected_class_without_truth.json')], stdout=subprocess.DEVNULL)
    # The .mat and the text motion files must give the same numbers.
    import json
    a = json.load(open(os.path.join(OUT, 'expected.json')))
    b = json.load(open(os.path.join(OUT, 'expected_text_motion.json')))
    assert a['motion'] == b['motion'], 'motion_iou.mat and motion_iou.txt disagree'
    os.remove(os.path.join(OUT, 'expected_text_motion.json'))
    # Loader fixtures: a corrupt file and an unknown WordNet id.
    bad = os.path.join(OUT, 'bad')
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, 'corrupt.xml'), 'w') as f:
        # Cut short in the middle of a tag, as a partial copy leaves it.
        f.write('<annotation>\n\t<size><width>320</width><height>240</height></size>\n\t<object>\n\t\t<name>n02691156</name>\n\t\t<bndbox><xmin>1</xmin><ymin>2</ym')
    with open(os.path.join(bad, 'unknown_wnid.xml'), 'w') as f:
        f.write('<annotation>\n\t<size><width>320</width><height>240</height></size>\n\t<object>\n\t\t<trackid>0</trackid>\n\t\t<name>n09999999</name>\n'
                '\t\t<bndbox><xmax>50</xmax><xmin>10</xmin><ymax>40</ymax><ymin>5</ymin></bndbox>\n\t\t<occluded>0</occluded>\n\t\t<generated>0</generated>\n\t</object>\n</annotation>\n')
    print('wrote', OUT, len(all_frames), 'frames,', len(dets), 'detections')


if __name__ == '__main__':
    main()
