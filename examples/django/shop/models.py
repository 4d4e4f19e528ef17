from django.db import models


class Order(models.Model):
    reference = models.CharField(max_length=64)
    item = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="new")


class Shipment(models.Model):
    """One row per run of ``ship_order``: what the worker did, whether or not the order exists."""

    reference = models.CharField(max_length=64)
    order_id = models.BigIntegerField()
