# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/run.sh's plot: gnuplot -e "dir='DATA'; out='FILE.png'" bench/plot.gp
# DATA holds one TOPO.dat per topology (n restore floor dump mountinfo, in us per mount),
# "topos" (their names) and "title".
topos = system("cat '".dir."/topos'")
title = system("cat '".dir."/title'")
set terminal pngcairo size 1400,620 font "sans,11"
set output out
set multiplot layout 1,2 title title font "sans,12"
set logscale x
set xrange [700:75000]
set xtics ("1k" 1000, "10k" 10000, "50k" 50000)
set xlabel "mounts in the namespace (N)"
set ylabel "microseconds per mount (log scale)"
set logscale y
set yrange [*:*]
set grid
set key bottom left box opaque font "sans,9"
set title "restore (solid) vs floor: the same mount-API calls, nothing else (dashed)"
plot for [i=1:words(topos)] dir.'/'.word(topos,i).'.dat' using 1:2 with linespoints lw 2 pt 7 lc i title word(topos,i).' restore', \
     for [i=1:words(topos)] dir.'/'.word(topos,i).'.dat' using 1:3 with linespoints lw 2 dt 2 pt 6 lc i title word(topos,i).' floor'
set title "dump (solid) vs reading /proc/PID/mountinfo (dashed)"
plot for [i=1:words(topos)] dir.'/'.word(topos,i).'.dat' using 1:4 with linespoints lw 2 pt 7 lc i title word(topos,i).' dump', \
     for [i=1:words(topos)] dir.'/'.word(topos,i).'.dat' using 1:5 with linespoints lw 2 dt 2 pt 6 lc i title word(topos,i).' mountinfo'
unset multiplot
