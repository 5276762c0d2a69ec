<?php
header('Content-Type: text/plain');
echo "Hello from PHP " . PHP_VERSION . " behind " . $_SERVER['SERVER_SOFTWARE'] . "\n";
