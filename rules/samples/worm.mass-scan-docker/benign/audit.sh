#!/bin/sh
masscan -p80 198.51.100.0/24 --rate 100 -oG web.txt
