#!/usr/bin/env bash
# Draws the sweep figure (as the paper's Figure 2): top-1 accuracy against average GMACs and
# against measured throughput, the ThinkingViT curve over thresholds and each stage alone as a
# separate point; with a fourth argument, the distribution of first-stage entropies split by
# whether stage 0 was right (as the paper's Figure 5).
# Usage: plot_sweep.sh sweep.csv stages.csv out.png [entropy_hist.csv]   (needs gnuplot)
set -euo pipefail
sweep=$1 stages=$2 out=$3 hist=${4:-}
panels=2 width=1200
if [[ -n $hist ]]; then panels=3 width=1800; fi
command -v gnuplot >/dev/null || { echo "plot_sweep: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp="$out.tmp-$$.png"
trap 'rm -f "$tmp"' EXIT
gnuplot <<GNUPLOT
set terminal pngcairo size $width,480 font ",11"
set output "$tmp"
set datafile separator ","
set key bottom right
set grid
set multiplot layout 1,$panels title "ThinkingViT: accuracy vs compute"
set xlabel "average GMACs per image (released convention)"
set ylabel "top-1 accuracy (%)"
plot "$sweep" every ::1 using 4:2 with linespoints lw 2 pt 7 title "ThinkingViT (tau sweep)", \
     "$stages" every ::1 using 4:3 with points pt 5 ps 1.6 title "each stage alone"
set xlabel "measured throughput (images/s)"
set key inside left bottom Left reverse  # accuracy falls as throughput rises: the lower left is free
stats "$sweep" every ::1 using 10 nooutput name "ratio"
set title sprintf("measured / formula: %.2f to %.2f", ratio_min, ratio_max)
plot "$sweep" every ::1 using 7:2 with linespoints lw 2 pt 7 title "ThinkingViT (measured early exit)", \
     "$sweep" every ::1 using 9:2 with lines dt 2 title "released formula", \
     "$stages" every ::1 using 5:3 with points pt 5 ps 1.6 title "each stage alone"
unset title
if ($panels == 3) {
  set xlabel "stage 0 entropy (nats)"
  set ylabel "images"
  set key top right
  set style fill transparent solid 0.5 border -1
  set style data boxes
  plot "$hist" every ::1 using ((\$1+\$2)/2):3:(\$2-\$1) with boxes lc rgb "#2a9d8f" title "stage 0 right", \
       "$hist" every ::1 using ((\$1+\$2)/2):4:(\$2-\$1) with boxes lc rgb "#e76f51" title "stage 0 wrong"
}
unset multiplot
GNUPLOT
mv "$tmp" "$out"
trap - EXIT
