// examples/coffee/coffee.h - what baristas and customers agree on: the name of the queue
// that orders wait in. Both sides declare it (declaring is idempotent), so whoever starts
// first creates it and orders placed before any barista arrives simply wait there.
#ifndef COFFEE_H_INCLUDED
#define COFFEE_H_INCLUDED

#define COFFEE_QUEUE "coffee.orders"

#endif
