from engine import shared_task

from .models import Order, Shipment


@shared_task
def ship_order(order_id: int, reference: str) -> str:
    Shipment.objects.create(order_id=order_id, reference=reference)
    Order.objects.filter(pk=order_id).update(status="shipped")
    return reference
