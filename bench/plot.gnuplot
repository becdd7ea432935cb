# bench/plot.gnuplot - recall@10 (x) against QPS (y, log scale), one curve per
# engine, from a bench/results/<set>.csv (engine,ef,recall,qps,...).
# Called by bench/run.sh:
#   gnuplot -e "csv='in.csv'; png='out.png'; ttl='title'" bench/plot.gnuplot
# Rows of one engine are contiguous and in ef order, so each curve is drawn
# through its points in sweep order; other engines' rows are NaN and skipped.
if (!exists("csv")) csv = 'bench/results/fashion-mnist.csv'
if (!exists("png")) png = 'bench/results/fashion-mnist.png'
if (!exists("ttl")) ttl = csv
engines = "hnswflow hnswflow-speed hnswflow-int8 hnswflow-pq8 hnswlib faiss usearch"

set terminal pngcairo size 1000,700 enhanced font ",11"
set output png
set datafile separator ","
set title ttl noenhanced
set xlabel "recall@10" noenhanced
set ylabel "queries per second, one thread (log scale)"
set logscale y
set grid xtics ytics mytics
set key top right box opaque
set xrange [*:1.005]

plot for [i = 1:words(engines)] csv skip 1 \
    using 3:(strcol(1) eq word(engines, i) ? $4 : NaN) \
    with linespoints lw 2 pt (i + 4) ps 1.2 title word(engines, i)
