#!/usr/bin/env bash
# Draws the sweep figure (as the paper's Figure 2): top-1 accuracy against average GMACs and
# against measured throughput, the ThinkingViT curve over thresholds and each stage alone as a
# separate point. Usage: plot_sweep.sh sweep.csv stages.csv out.png   (needs gnuplot)
set -euo pipefail
sweep=$1 stages=$2 out=$3
command -v gnuplot >/dev/null || { echo "plot_sweep: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp="$out.tmp-$$.png"
trap 'rm -f "$tmp"' EXIT
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,480 font ",11"
set output "$tmp"
set datafile separator ","
set key bottom right
set grid
set multiplot layout 1,2 title "ThinkingViT: accuracy vs compute"
set xlabel "average GMACs per image (released convention)"
set ylabel "top-1 accuracy (%)"
plot "$sweep" every ::1 using 4:2 with linespoints lw 2 pt 7 title "ThinkingViT (tau sweep)", \
     "$stages" every ::1 using 4:3 with points pt 5 ps 1.6 title "each stage alone"
set xlabel "measured throughput (images/s)"
plot "$sweep" every ::1 using 7:2 with linespoints lw 2 pt 7 title "ThinkingViT (measured early exit)", \
     "$sweep" every ::1 using 9:2 with lines dt 2 title "released formula", \
     "$stages" every ::1 using 5:3 with points pt 5 ps 1.6 title "each stage alone"
unset multiplot
GNUPLOT
mv "$tmp" "$out"
trap - EXIT
