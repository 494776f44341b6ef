"""Converts MSRA's imagenet_vid_groundtruth_motion_iou.mat (Flow-Guided-Feature-Aggregation,
lib/dataset/) to the text form `dcn-eval vid --motion` reads: one line per frame of the evaluated
image set, in its order, '<frame path> <motion IoU of object 1> <of object 2> ...'. The values are
read with the expression of imagenet_vid_eval_motion.py (an empty cell is 0), and row i is frame i
of the image set, as the script indexes them.

Usage: python scripts/vid_motion_mat_to_text.py MOTION.mat IMAGESET OUT.txt
IMAGESET: the list the evaluation reads (VID_val_frames.txt, or VID_val_videos.txt whose video
lines are expanded to their frames as MSRA's do_python_eval_gen does).
Needs numpy and scipy."""
import sys

import scipy.io as sio


def frames(imageset):
    out = []
    with open(imageset) as f:
        for line in f:
            x = line.split()
            if len(x) == 2:
                out.append(x[0])
            elif len(x) == 4:
                out += ['%s/%06d' % (x[0], int(x[2]) + j) for j in range(int(x[3]))]
    return out


def main(argv):
    if len(argv) != 4:
        sys.exit(__doc__)
    m = sio.loadmat(argv[1])['motion_iou']
    rows = [[m[i][0][j][0] if len(m[i][0][j]) != 0 else 0 for j in range(len(m[i][0]))] for i in range(len(m))]
    paths = frames(argv[2])
    if len(paths) != len(rows):
        sys.exit('%s has %d rows but %s lists %d frames' % (argv[1], len(rows), argv[2], len(paths)))
    with open(argv[3], 'w') as f:
        for path, row in zip(paths, rows):
            f.write(' '.join([path] + [repr(float(v)) for v in row]) + '\n')


if __name__ == '__main__':
    main(sys.argv)
