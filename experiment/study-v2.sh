#!/bin/sh
# The issue-13 study on task v2, resumable: one process per seed, each
# writing its own results.json; a seed whose results.json exists is skipped,
# so rerunning this script resumes where it stopped (a seed that was cut off
# restarts from its beginning). Runs at nice 19 with one Go thread per
# process, so it only takes idle CPU.
#
#   experiment/study-v2.sh BIN PHASE SEED...
#
# BIN: a built experiment binary (go build -o out/study-v2/bin/experiment
# ./experiment/cmd/experiment), PHASE: essential or rest (the arm sets
# below). Output: out/study-v2/PHASE/seed-NN/{EXPERIMENTS.md,img/v2-results.json},
# log out/study-v2/log-PHASE-seed-NN.txt. Merge and render with
#   go run ./experiment/cmd/experiment --replot 'out/study-v2/*/seed-*/img/v2-results.json' --out DIR
set -u
bin=$1
phase=$2
shift 2
case $phase in
essential) arms=all,random,congrad,noise,gate,gategroup,group,anchor,ownmean,margin ;;
rest) arms=balanced,loss,less ;;
*) echo "phase must be essential or rest" >&2; exit 2 ;;
esac
for s in "$@"; do
	d=$(printf 'out/study-v2/%s/seed-%02d' "$phase" "$s")
	if [ -f "$d/img/v2-results.json" ]; then
		continue
	fi
	mkdir -p "out/study-v2/$phase"
	log=$(printf 'out/study-v2/log-%s-seed-%02d.txt' "$phase" "$s")
	GOMAXPROCS=1 nice -n 19 "$bin" --task v2 --seeds "$s" --arms "$arms" --out "$d.tmp" >"$log" 2>&1 &&
		rm -rf "$d" && mv "$d.tmp" "$d"
done
