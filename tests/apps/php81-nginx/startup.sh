#!/bin/sh
# NGINX and PHP-FPM from a start script, as in the guide (L3058-3070).
set -e
php-fpm8.2 -D
exec nginx -c /app/nginx.conf -g 'daemon off;'
